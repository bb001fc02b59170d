"""``recbench bench``: the record's fields, FLOP counting against a hand count, the merge and
data tools, and the GPU script (syntax and a CPU dry run on tiny data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from recbench import bench
from recbench.data import leave_one_out, make_synthetic
from recbench.data.types import Split, TrainData
from recbench.models.base import ConfigError, FitContext
from recbench.models.sampling import Batches, pairwise_batches
from recbench.models.torch import TorchModel

ROOT = Path(__file__).resolve().parents[1]
GPU_SH = ROOT / "benchmarks" / "gpu.sh"


@pytest.fixture(scope="module")
def split() -> Split:
    data = make_synthetic(n_users=40, n_items=150, mean_interactions=12, seed=3, name="tiny")
    return leave_one_out(data, seed=0, n_negatives=20)


# ----------------------------------------------------------------------------- a tiny model


@dataclass(frozen=True)
class TinyConfig:
    d: int = 3
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-2
    reg: float = 0.0
    n_negatives: int = 1


class TinyModule(nn.Module):
    """``logit = W [p_u ; q_i] + b``: one Linear(2d → 1) on the concatenated embeddings."""

    def __init__(self, n_users: int, n_items: int, d: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, d)
        self.item = nn.Embedding(n_items, d)
        self.out = nn.Linear(2 * d, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat((self.user(users), self.item(items)), 1)).squeeze(-1)


class Tiny(TorchModel):
    name: ClassVar[str] = "tiny"
    Config: ClassVar[type] = TinyConfig

    def build_module(self, train: TrainData) -> nn.Module:
        return TinyModule(train.n_users, train.n_items, self.config.d)


def test_flops_of_a_linear_model_match_the_hand_count(split: Split) -> None:
    model = Tiny()
    model.fit(split.train, np.random.default_rng(0), FitContext())
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    res = bench.count_step_flops(model, split, np.random.default_rng(1))
    b, d = 16, 3
    # forward  addmm [b, 2d] x [2d, 1]          : 2·b·2d
    # backward grad input  [b, 1] x [1, 2d]      : 2·b·2d  (the embeddings need it)
    #          grad weight [1, b] x [b, 2d]      : 2·b·2d
    assert res["flops_per_step"] == 3 * 2 * b * 2 * d
    assert res["samples_per_step"] == b
    assert res["flops_per_sample"] == pytest.approx(12 * d)
    assert set(res["by_op"]) <= {"aten.addmm", "aten.mm"}
    # the count leaves the fitted model untouched (no step, no batch-norm statistics, no grads)
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.module.parameters())


def test_flops_of_a_pairwise_batch_count_every_negative(split: Split) -> None:
    class TinyPair(Tiny):
        def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
            cfg = self.config
            return pairwise_batches(
                train, rng, batch_size=cfg.batch_size, n_negatives=cfg.n_negatives, device=self.device
            )

        def batch_loss(self, users, items, targets, negatives):  # type: ignore[override]
            pos = self.forward(users, items)
            neg = self.forward(users.repeat_interleave(negatives.shape[1]), negatives.reshape(-1))
            return torch.nn.functional.softplus(neg.view_as(negatives) - pos[:, None]).mean()

    model = TinyPair(TinyConfig(n_negatives=2))
    model.fit(split.train, np.random.default_rng(0), FitContext())
    res = bench.count_step_flops(model, split, np.random.default_rng(1))
    assert res["samples_per_step"] == 16 * 3
    assert res["flops_per_step"] == 3 * 2 * (16 * 3) * 2 * 3


def test_matmul_peak_is_positive_and_describes_itself() -> None:
    p = bench.matmul_peak("cpu", n=64, repeats=3, warmup=1)
    assert p["n"] == 64 and p["flops"] == 2 * 64**3
    assert len(p["seconds"]) == 3 and p["flops_per_s"] > 0
    assert p["best_flops_per_s"] >= p["flops_per_s"]


# ----------------------------------------------------------------------------- the record


@pytest.fixture(scope="module")
def record(split: Split) -> dict:
    opts = bench.BenchOptions(
        epochs=1,
        repeats=2,
        overrides={"ncf": {"embedding_size": 4, "mlp_layers": (8, 4)}},
        matmul_n=64,
        matmul_repeats=2,
    )
    return bench.run_bench("tiny", ["itempop", "bpr", "ncf"], opts, split_loader=lambda _: split)


def test_record_has_every_field(record: dict) -> None:
    for key in (
        "dataset",
        "device",
        "created",
        "hardware",
        "versions",
        "options",
        "split_info",
        "matmul_peak",
        "models",
        "load_average",
    ):
        assert key in record, key
    assert record["matmul_peak"]["flops_per_s"] > 0
    assert [m["model"] for m in record["models"]] == ["itempop", "bpr", "ncf"]
    for m in record["models"]:
        assert set(bench.MODEL_FIELDS) <= set(m), set(bench.MODEL_FIELDS) - set(m)
        assert m["status"] == "ok", m.get("traceback")
        assert m["eval_sampled_s"] > 0 and m["eval_full_s"] > 0
        assert m["eval_sampled_first_s"] > 0 and m["eval_full_first_s"] > 0
        assert m["peak_rss_mb"] > 0 and m["n_params"] > 0
        assert len(m["raw"]) == 2
        assert 0.0 <= m["metrics"]["sampled"]["hr@10"] <= 1.0
    ncf = record["models"][2]
    assert ncf["samples_per_s"] > 0 and ncf["s_per_epoch"] > 0
    assert ncf["samples_per_epoch"] == pytest.approx(record["split_info"]["n_train"] * 5, abs=1)
    assert ncf["flops_per_sample"] > 0 and ncf["peak_fraction"] > 0
    assert ncf["achieved_flops_per_s"] == pytest.approx(ncf["flops_per_sample"] * ncf["samples_per_s"])
    bpr = record["models"][1]
    assert bpr["epochs"] == 1 and bpr["samples_per_epoch"] == record["split_info"]["n_train"]
    assert bpr["flops_per_sample"] is None  # not a PyTorch model
    assert record["models"][0]["samples_per_s"] is None  # ItemPop has no epochs


def test_stage_fractions_use_the_same_peak_as_the_model_fraction(split: Split) -> None:
    """Every fraction of peak in a record is against the run's median matmul peak (start and
    end): the model's and each stage's alike."""
    opts = bench.BenchOptions(
        epochs=1,
        repeats=1,
        protocols=("sampled",),
        overrides={"opeci": {"embedding_size": 8, "mlp_hidden": (16,), "precise_bn_batches": 2}},
        matmul_n=64,
        matmul_repeats=2,
    )
    rec = bench.run_bench("tiny", ["opeci"], opts, split_loader=lambda _: split)
    (m,) = rec["models"]
    peak = rec["runs"][0]["matmul_peak"]["flops_per_s"]
    assert m["peak_fraction"] == pytest.approx(m["achieved_flops_per_s"] / peak)
    rated = [st for st in m["stages"] if st["flops_per_s"]]
    assert rated and all(st["peak_fraction"] == pytest.approx(st["flops_per_s"] / peak) for st in rated)


def test_write_bench_writes_json_and_markdown(record: dict, tmp_path: Path) -> None:
    path, md = bench.write_bench(record, tmp_path)
    assert path.name.startswith("tiny-cpu-") and path.suffix == ".json"
    again = json.loads(path.read_text())
    assert again["models"][2]["flops_per_sample"] == record["models"][2]["flops_per_sample"]
    text = md.read_text()
    assert "| ncf | ok |" in text and "% of peak" in text
    path2, _ = bench.write_bench(record, tmp_path)  # same second: a second file, not overwritten
    assert path2 != path and path.exists()
    merged = bench.merge_records([again, json.loads(path2.read_text())])
    assert len(merged["models"]) == 6 and len(merged["runs"]) == 2


def test_a_failing_model_is_recorded_and_the_rest_go_on(split: Split, monkeypatch) -> None:
    from baselines.itempop import ItemPop

    def boom(self, *a, **k):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(ItemPop, "fit", boom)
    opts = bench.BenchOptions(repeats=1, matmul_n=32, matmul_repeats=1, protocols=("sampled",))
    rec = bench.run_bench("tiny", ["itempop", "bpr"], opts, split_loader=lambda _: split)
    assert rec["models"][0]["status"] == "failed"
    assert "planted failure" in rec["models"][0]["error"]
    assert rec["models"][1]["status"] == "ok"
    assert "failed: RuntimeError" in bench.render_markdown(rec)


def test_the_record_is_handed_over_after_every_model(split: Split) -> None:
    seen: list[tuple[list[str], bool]] = []
    opts = bench.BenchOptions(repeats=1, matmul_n=32, matmul_repeats=1, protocols=("sampled",), eval_runs=1)

    def update(rec: dict) -> None:
        seen.append(([m["model"] for m in rec["models"]], rec["complete"]))
        assert "unfinished" in bench.render_markdown(rec)  # renders without the end peak

    rec = bench.run_bench("tiny", ["itempop", "bpr"], opts, split_loader=lambda _: split, on_update=update)
    assert seen == [(["itempop"], False), (["itempop", "bpr"], False)]
    assert rec["complete"] is True and rec["matmul_peak"]["end"] is not None
    assert "unfinished" not in bench.render_markdown(rec)


def test_a_resumed_record_measures_its_failed_model_again_in_place(split: Split, monkeypatch) -> None:
    from baselines.itempop import ItemPop

    opts = bench.BenchOptions(repeats=1, matmul_n=32, matmul_repeats=1, protocols=("sampled",), eval_runs=1)
    with monkeypatch.context() as m:
        m.setattr(ItemPop, "fit", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("planted")))
        first = bench.run_bench("tiny", ["itempop", "bpr"], opts, split_loader=lambda _: split)
    assert [r["status"] for r in first["models"]] == ["failed", "ok"]
    first["complete"] = False  # as a bench killed after these two
    measured: list[str] = []
    rec = bench.run_bench(
        "tiny", ["itempop", "bpr"], opts, split_loader=lambda _: split, resume=first,
        on_model=lambda r: measured.append(r["model"]),
    )  # fmt: skip
    assert measured == ["itempop"]  # bpr was measured ok
    assert [(r["model"], r["status"]) for r in rec["models"]] == [("itempop", "ok"), ("bpr", "ok")]
    assert [r["models"] for r in rec["runs"]] == [["itempop", "bpr"], ["itempop"]]
    with pytest.raises(ConfigError, match="another split"):
        other = leave_one_out(make_synthetic(n_users=40, n_items=150, mean_interactions=12, seed=4), seed=0)
        bench.run_bench("tiny", ["bpr"], opts, split_loader=lambda _: other, resume=first)


def test_bad_options_fail_before_any_work(split: Split) -> None:
    with pytest.raises(ConfigError):
        bench.BenchOptions(protocols=("nope",))
    with pytest.raises(ConfigError):
        bench.BenchOptions(repeats=0)
    with pytest.raises(ConfigError, match="not in --models"):
        bench.run_bench(
            "tiny",
            ["bpr"],
            bench.BenchOptions(overrides={"ncf": {"epochs": 2}}),
            split_loader=lambda _: split,
        )


# ----------------------------------------------------------------------------- data tools


def test_ml1m_like_file_round_trips_through_the_data_timing(tmp_path: Path) -> None:
    cols = bench.ml1m_like(None, seed=0, n_users=30, n_items=150, n_ratings=600)
    users, items, ratings, _ts = cols
    assert users.min() >= 1 and items.min() >= 1 and set(np.unique(ratings)) <= {1, 2, 3, 4, 5}
    path = bench.write_ratings_dat(tmp_path / "ratings.dat", *cols)
    assert path.read_text().splitlines()[0].count("::") == 3
    res = bench.bench_data(path, "ml-1m", repeats=1, n_negatives=20)
    assert res["rows"] == len(users) and res["n_users"] == 30
    assert res["total_s"] == pytest.approx(res["parse_s"] + res["preprocess_s"] + res["split_s"])


# ----------------------------------------------------------------------------- the GPU script


def test_gpu_script_syntax() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    subprocess.run([bash, "-n", str(GPU_SH)], check=True)


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "PYTHON": sys.executable,
        "MODELS": "itempop,ncf",
        "FORCE_SHIM": "1",  # exercise the stand-in the GPU image needs
        "SETS": "ncf.embedding_size=4 ncf.mlp_layers=8,4",
    }
    r = subprocess.run(["bash", str(GPU_SH), "--dry-run"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "data-source.json",
        "data-timing.json",
        "gpu-log.txt",
        "ml-1m-cpu.json",
        "ml-1m-cpu.md",
    ]
    assert len(files) <= 8  # what the device tool brings back
    rec = json.loads((out / "ml-1m-cpu.json").read_text())
    assert [m["model"] for m in rec["models"]] == ["itempop", "ncf"]
    assert all(m["status"] == "ok" for m in rec["models"])
    ncf = rec["models"][1]
    assert ncf["config"]["epochs"] == 1 and ncf["config"]["embedding_size"] == 4
    assert ncf["flops_per_sample"] > 0
    assert "platformdirs missing" in (out / "gpu-log.txt").read_text()


# ----------------------------------------------------------------------------- evaluator dtype


def test_evaluator_ranks_float32_scores_exactly_as_float64(split: Split) -> None:
    """The evaluator keeps float32 scores as they are (no widening copy): same ranks, ties
    and NaNs included, as the same scores given in float64."""
    from recbench.eval.evaluator import full_ranks, sampled_ranks

    rng = np.random.default_rng(0)
    table = rng.integers(0, 5, size=(split.n_users, split.n_items)).astype(np.float32)  # many ties
    table[0, :3] = np.nan

    class Fixed:
        def __init__(self, dtype):
            self.t = table.astype(dtype)

        def score(self, users, items):
            return self.t[users, items]

        def score_matrix(self, users):
            return self.t[users]

    for fn in (lambda m: sampled_ranks(m, split.test), lambda m: full_ranks(m, split.train, split.test)[0]):
        assert np.array_equal(fn(Fixed(np.float32)), fn(Fixed(np.float64)))


def test_stage_rates_cut_opecis_step_and_leave_the_model_as_it_was(tiny_split: Split) -> None:
    """Every stage is measured (matrix-product FLOPs where it has any), the weights and the
    optimiser-free state come back unchanged, and a model without stages gets none."""
    import torch

    from recbench.bench.files import stage_table
    from recbench.bench.stages import stage_rates
    from recbench.registry import MODELS

    cls = MODELS["opeci"]
    m = cls(cls.Config(epochs=0, embedding_size=8, mlp_hidden=(16, 8), batch_size=64, precision="fp32"))
    m.fit(tiny_split.train, np.random.default_rng(0))
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    rows = stage_rates(m, tiny_split, np.random.default_rng(0), peak_flops_per_s=1e12, repeats=2)
    assert [r["stage"] for r in rows] == ["aggregation", "block", "mlp", "optimiser"]
    by = {r["stage"]: r for r in rows}
    assert by["block"]["flops"] > 0 and by["mlp"]["flops"] > 0 and by["aggregation"]["flops"] > 0
    assert by["optimiser"]["flops"] == 0 and by["optimiser"]["peak_fraction"] is None
    assert all(r["ms"] > 0 for r in rows) and 0 < by["mlp"]["peak_fraction"] < 1
    after = m.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert stage_rates(MODELS["itempop"](), tiny_split, np.random.default_rng(0)) == []
    md = "\n".join(stage_table({"model": "opeci", "stages": rows}))
    assert "| mlp |" in md and "Per stage" in md and "| optimiser |" in md

"""Issue 13: the paper's L2 scale, model revisions, the readings of OPECI's and CADNCF's
attention (opeci-res, the CADNCF entry gate, outer-mlp) and the diagnostic that measures them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.cadncf import CADNCFConfig, CADNCFModule, EntryGate
from recbench.cli import app
from recbench.data.types import Split
from recbench.diagnose import diagnose, participation_ratio
from recbench.plan import resolve_config, run_grid
from recbench.registry import get_model_class
from recbench.report import model_label
from recbench.results import Record
from recbench.runner import RunOptions

TINY_OPECI = {"embedding_size": 8, "d_k": 4, "d_v": 4, "mlp_hidden": "(16,)", "attention_hidden": 8, "epochs": 1}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def _model(name: str, **sets):  # type: ignore[no-untyped-def]
    return get_model_class(name)(resolve_config(name, sets=sets))


# ----------------------------------------------------------------------------- the L2 penalty


def test_reg_is_the_papers_lambda_on_the_summed_loss(tiny_split: Split) -> None:
    """λ‖θ‖² on the batch's summed loss = decay 2λ/B on its mean (checked by autograd)."""
    m = _model("ncf", reg="0.001", batch_size="64", epochs="1")
    m.init_module(tiny_split.train, np.random.default_rng(0))
    assert m.weight_decay() == pytest.approx(2 * 0.001 / 64)
    opt = m.optimizer()
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(2 * 0.001 / 64)
    p = next(m.module.parameters())
    lam, b = 0.001, 64
    penalty_grad = torch.autograd.grad(lam * (p**2).sum() / b, p)[0]  # (λ‖θ‖²)/B: the mean's share
    torch.testing.assert_close(penalty_grad, m.weight_decay() * p.detach())


def test_revisions_separate_old_records(tiny_split: Split, tmp_path: Path) -> None:
    ncf0 = resolve_config("ncf")
    assert get_model_class("ncf").revision_of(ncf0) == 1  # reg = 0 trains as before
    assert get_model_class("ncf").revision_of(resolve_config("ncf", sets={"reg": "0.01"})) == 2
    assert get_model_class("opeci").revision_of(resolve_config("opeci")) == 2
    recs = run_grid(
        ["tiny"],
        ["itempop", "opeci"],
        RunOptions(out=tmp_path, overrides={"opeci": TINY_OPECI}),
        split_loader=lambda _n: tiny_split,
    )
    assert "revision" not in recs[0].data and recs[1]["revision"] == 2
    old = json.loads(json.dumps(recs[1].data))
    del old["revision"]  # a record of revision 1
    assert model_label(Record(old)).startswith("opeci[") and "revision=1" in model_label(Record(old))
    assert "revision" not in model_label(recs[1])


# ----------------------------------------------------------------------------- the readings


def test_entry_gate_is_a_reweighting_of_m() -> None:
    torch.manual_seed(0)
    gate = EntryGate(4)
    m = torch.randn(3, 4, 4)
    a = gate.weights(m)
    torch.testing.assert_close(a.sum((1, 2)), torch.ones(3))
    z = m / m.reshape(3, -1).std(1).view(3, 1, 1)  # slow reference: softmax over the 16 entries
    ref = torch.stack([torch.softmax((z[k] * gate.a + gate.b).flatten(), 0).reshape(4, 4) for k in range(3)])
    torch.testing.assert_close(a, ref)
    with torch.no_grad():
        gate.a.zero_()  # uniform weights: O = d² · (1/d²) · M = M
    torch.testing.assert_close(gate(m), m)


def test_outer_mlp_and_gate_feed_the_mlp_with_m() -> None:
    torch.manual_seed(0)
    u, i = torch.tensor([0, 3, 2]), torch.tensor([1, 1, 4])
    floor = CADNCFModule(4, 5, CADNCFConfig(embedding_size=6, hidden=(8,), gate="none")).eval()
    with torch.no_grad():
        m = floor.user(u).unsqueeze(2) * floor.item(i).unsqueeze(1)
        torch.testing.assert_close(floor(u, i), floor.head(m))
    gated = CADNCFModule(4, 5, CADNCFConfig(embedding_size=6, hidden=(8,))).eval()
    with torch.no_grad():
        m = gated.user(u).unsqueeze(2) * gated.item(i).unsqueeze(1)
        ref = gated.head(36 * gated.attention.weights(m) * m)
        torch.testing.assert_close(gated(u, i), ref)


def test_opeci_res_is_layernorm_of_m_plus_the_block(tiny_split: Split) -> None:
    m = _model("opeci-res", **TINY_OPECI)
    m.init_module(tiny_split.train, np.random.default_rng(0))
    mod = m.module
    u, i = torch.tensor([0, 5, 7]), torch.tensor([2, 2, 9])
    with torch.no_grad():
        h, z = mod.pair_inputs(u, i)
        mm = h.unsqueeze(2) * z.unsqueeze(1)
        ref = torch.nn.functional.layer_norm(mm + mod.block.forward_matrix(mm), (8,), mod.norm.weight, mod.norm.bias)
        torch.testing.assert_close(mod.attended(h, z), ref, rtol=1e-4, atol=1e-5)
    assert _model("opeci").module is None and resolve_config("opeci").block == "paper"


@pytest.mark.parametrize("name", ["opeci-res", "cadncf", "outer-mlp"])
def test_readings_learn_above_chance(name: str, small_split: Split) -> None:
    sets = {**TINY_OPECI, "epochs": 2} if name.startswith("opeci") else {"embedding_size": 16, "epochs": 3}
    (rec,) = run_grid(
        [small_split.dataset],
        [name],
        RunOptions(out=Path("/tmp") / f"readings-{name}", force=True, checkpoint=False, overrides={name: sets}),
        split_loader=lambda _n: small_split,
    )
    assert rec.status == "ok" and rec["metrics"]["sampled"]["hr@10"] > 0.2, rec.data.get("error") or rec["metrics"]


# ----------------------------------------------------------------------------- the diagnostic


def test_participation_ratio_by_hand() -> None:
    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=200), rng.normal(size=10))  # one direction
    assert participation_ratio(line)[0] == pytest.approx(1.0)
    iso = rng.normal(size=(5000, 4))  # four equal directions
    assert participation_ratio(iso)[0] == pytest.approx(4.0, rel=0.05)
    # eigenvalues 1 and 1/2 (variances 1, 1/4? no: scale by √½): PR = (1.5)² / 1.25 = 1.8
    two = np.stack([rng.normal(size=20000), np.sqrt(0.5) * rng.normal(size=20000)], 1)
    assert participation_ratio(two)[0] == pytest.approx(1.8, rel=0.03)


def test_diagnose_tells_flow_from_collapse(tiny_split: Split) -> None:
    """An MLP on flatten(p qᵀ): user information spreads over many directions; a uniform
    self-attention block over the rank-one M: about one direction, entropy ≈ 1."""
    flows = _model("outer-mlp", embedding_size="8", hidden="(16,)")
    flows.init_module(tiny_split.train, np.random.default_rng(0))
    d = diagnose(flows, n_items=4)
    assert d.participation_ratio > 3 and d.attention_entropy is None
    collapsed = _model("cadncf-mhsa", embedding_size="8", hidden="(16,)")
    collapsed.init_module(tiny_split.train, np.random.default_rng(0))
    c = diagnose(collapsed, n_items=4)
    assert c.participation_ratio < 1.3 and c.attention_entropy > 0.99 and c.top_direction_share > 0.85
    assert c.permutation_ratio < d.permutation_ratio


def test_diagnose_command(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    r = CliRunner().invoke(
        app, ["diagnose", "outer-mlp", "--set", "outer-mlp.embedding_size=8", "--items", "2", "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["model"] == "outer-mlp" and doc["participation_ratio"] > 1 and doc["epochs"] == 0
    bad = CliRunner().invoke(app, ["diagnose", "ncf"])
    assert bad.exit_code == 2 and "correlation-attention" in bad.output


def test_diagnose_a_checkpoint_measures_the_fits_weights(tiny_split: Split, tmp_path: Path) -> None:
    """A fit's checkpoint loads its best validation epoch's weights (or its last), and the
    diagnosis of the loaded model is that of the fitted one; another model's file is refused."""
    from recbench.checkpoint import CheckpointSpec
    from recbench.diagnose import load_checkpoint
    from recbench.models.base import FitContext

    sets = {"embedding_size": "8", "hidden": "(16,)", "epochs": "3"}
    scores = iter([0.5, 0.9, 0.1])  # the best validation epoch is 2 of 3
    fitted = _model("outer-mlp", **sets)
    path = tmp_path / "fit.ckpt"
    ctx = FitContext(
        early_stopping_patience=5,
        evaluate=lambda _m, _role: {"ndcg@10": next(scores)},
        checkpoint=CheckpointSpec(path, key="k"),
    )
    fitted.fit(tiny_split.train, np.random.default_rng(0), ctx)  # ends with epoch 2's weights
    fresh = _model("outer-mlp", **sets)
    fresh.init_module(tiny_split.train, np.random.default_rng(1))
    info = load_checkpoint(fresh, path)
    assert info["weights"] == "best" and info["epoch"] == 2 and info["epochs_run"] == 3 and info["fit_finished"]
    assert info["best_validation"] == pytest.approx(0.9)
    for (name, a), b in zip(fitted.module.state_dict().items(), fresh.module.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert diagnose(fresh, n_items=3) == diagnose(fitted, n_items=3)
    last = load_checkpoint(fresh, path, "last")
    assert last["weights"] == "last" and last["epoch"] == 3
    pairs = zip(fitted.module.state_dict().values(), fresh.module.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    other = _model("cadncf", embedding_size="8", hidden="(16,)")
    other.init_module(tiny_split.train, np.random.default_rng(0))
    with pytest.raises(ValueError, match="of model 'outer-mlp'"):
        load_checkpoint(other, path)
    wider = _model("outer-mlp", embedding_size="4", hidden="(16,)")
    wider.init_module(tiny_split.train, np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not fit this outer-mlp config"):
        load_checkpoint(wider, path)


def test_diagnose_command_on_a_checkpoint(tiny_split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`recbench diagnose --checkpoint` on a fit's file; bad combinations are one-line errors."""
    from recbench.checkpoint import CheckpointSpec
    from recbench.models.base import FitContext

    sets = {"embedding_size": "8", "hidden": "(16,)", "epochs": "2"}
    path = tmp_path / "fit.ckpt"
    m = _model("outer-mlp", **sets)
    m.fit(tiny_split.train, np.random.default_rng(0), FitContext(checkpoint=CheckpointSpec(path, key="k")))
    monkeypatch.setattr("recbench.runner.load_spec", lambda _spec, _dir: tiny_split)
    monkeypatch.setattr("recbench.runner.check_datasets", lambda _names, _dir: None)
    out = tmp_path / "d.json"
    args = ["diagnose", "outer-mlp", "--dataset", "tiny", "--set", "outer-mlp.embedding_size=8"]
    args += ["--set", "outer-mlp.hidden=(16,)", "--items", "2"]
    r = CliRunner().invoke(app, [*args, "--checkpoint", str(path), "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["weights"] == "last" and doc["epoch"] == 2 and doc["epochs"] == 2  # no validation: the last
    assert doc["participation_ratio"] == pytest.approx(diagnose(m, n_items=2).participation_ratio)
    both = CliRunner().invoke(app, [*args, "--checkpoint", str(path), "--epochs", "1"])
    assert both.exit_code == 2 and "give one" in both.output
    missing = CliRunner().invoke(app, [*args, "--checkpoint", str(tmp_path / "none.ckpt")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    mismatch = CliRunner().invoke(app, [*args[:-4], "--items", "2", "--checkpoint", str(path)])
    assert mismatch.exit_code == 2 and "does not fit" in mismatch.output


def test_diagnose_weights_is_best_or_last() -> None:
    r = CliRunner().invoke(app, ["diagnose", "outer-mlp", "--checkpoint", "x.ckpt", "--weights", "first"])
    assert r.exit_code == 2 and "unknown weights 'first'; valid: best, last" in r.output

"""Per-epoch checkpoints: a fit killed with SIGKILL resumes at its last epoch and ends with
per-user ranks bit-identical to an uninterrupted fit; a damaged checkpoint is ignored with one
warning line and the fit starts again from epoch 1 (nothing else is lost)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from recbench.checkpoint import CheckpointError, decode, encode
from recbench.plan import run_grid
from recbench.results import Record, iter_records
from recbench.runner import Reporter, RunOptions

from ._procs import LARGE, large_env, recbench, spawn

pytestmark = pytest.mark.timeout(300)

# Small enough to run in CI, long enough per epoch that the kill lands in the middle of a fit.
CASES = {
    "ncf": ["--set", "ncf.epochs=8"],
    "opeci": [
        "--set",
        "opeci.epochs=4",
        "--set",
        "opeci.embedding_size=16",
        "--set",
        "opeci.d_k=4",
        "--set",
        "opeci.d_v=4",
        "--set",
        "opeci.mlp_hidden=(32,)",
        "--set",
        "opeci.attention_hidden=16",
        "--set",
        "opeci.n_negatives=2",
        "--set",
        "opeci.precise_bn_batches=5",
    ],
}


def _args(model: str, out: Path) -> list[str]:
    return ["run", "--dataset", LARGE, "--models", model, *CASES[model], "--protocol", "both", "--out", str(out)]


def _record(out: Path) -> Record:
    recs = list(iter_records(out))
    assert len(recs) == 1 and recs[0].status == "ok", [r.data.get("error") for r in recs]
    return recs[0]


def _same_ranks(a: Record, b: Record) -> None:
    assert a.ranks.keys() == b.ranks.keys()
    assert np.array_equal(a.users, b.users)
    for k in a.ranks:
        assert np.array_equal(a.ranks[k], b.ranks[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ncf", "opeci"])
def test_kill_9_then_resume_gives_identical_ranks(model: str, tmp_path: Path) -> None:
    env = large_env(RECBENCH_HOME=str(tmp_path / "home"))
    ref = recbench(_args(model, tmp_path / "ref"), env=env, timeout=240)
    assert ref.returncode == 0, ref.stderr
    reference = _record(tmp_path / "ref")

    out = tmp_path / "killed"
    log = tmp_path / "run.log"
    proc = spawn(_args(model, out), log, env=env)
    deadline = time.monotonic() + 200
    # the plain log (stderr is a file) prints an epoch's line after its checkpoint is written
    while not re.search(rf"{model} · seed 0: epoch 2/", log.read_text(errors="replace")):
        assert proc.poll() is None, f"finished before the second checkpoint:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)
    time.sleep(random.Random(model).uniform(0, 0.2))  # anywhere after the second checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    ckpts = list((out / ".checkpoints").rglob("*.ckpt"))
    assert len(ckpts) == 1 and not list(iter_records(out)), "killed mid-fit: a checkpoint, no record"

    again = recbench(_args(model, out), env=env, timeout=240)
    assert again.returncode == 0, again.stderr
    m = re.search(rf"resuming {LARGE} · {model} · seed 0 at epoch (\d+)/(\d+)", again.stderr)
    assert m and int(m.group(1)) >= 3, again.stderr
    resumed = _record(out)
    assert resumed["resumed_from_epoch"] == int(m.group(1)) - 1
    _same_ranks(resumed, reference)
    assert resumed["metrics"] == reference["metrics"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in reference["history"]]
    assert not list((out / ".checkpoints").rglob("*.ckpt")), "the checkpoint is removed with the record"


class _Stop(KeyboardInterrupt):  # propagates: a failing Exception would be recorded
    pass


class _StopAt(Reporter):
    """Interrupts the fit after epoch ``at`` (its checkpoint already written); keeps messages."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.messages = at, []

    def epoch(self, cell: str, info: dict) -> None:
        if info["epoch"] == self.at:
            raise _Stop

    def message(self, text: str) -> None:
        self.messages.append(text)


def _ncf_grid(out: Path, reporter: Reporter, split, **kw) -> list[Record]:
    opts = RunOptions(out=out, overrides={"ncf": {"epochs": "4"}}, **kw)
    return run_grid([split.dataset], ["ncf"], opts, reporter, split_loader=lambda _n: split)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_checkpoint_is_ignored_with_one_warning(damage: str, tiny_split, tmp_path: Path) -> None:
    (ref,) = _ncf_grid(tmp_path / "ref", Reporter(), tiny_split)
    out = tmp_path / "out"
    with pytest.raises(_Stop):
        _ncf_grid(out, _StopAt(2), tiny_split)
    (ckpt,) = (out / ".checkpoints").rglob("*.ckpt")
    blob = ckpt.read_bytes()
    bad = {
        "truncate": blob[: len(blob) // 2],
        "flip": blob[:-100] + bytes([blob[-100] ^ 1]) + blob[-99:],
        "garbage": b"\x00" * 64,
        "empty": b"",
    }[damage]
    ckpt.write_bytes(bad)
    rep = _StopAt()
    (rec,) = _ncf_grid(out, rep, tiny_split)
    assert len(rep.messages) == 1 and rep.messages[0].startswith("warning: ignoring checkpoint"), rep.messages
    assert "starts at epoch 1" in rep.messages[0]
    assert "resumed_from_epoch" not in rec.data
    _same_ranks(rec, ref)


def test_no_checkpoint_and_checkpoint_every(tiny_split, tmp_path: Path) -> None:
    with pytest.raises(_Stop):
        _ncf_grid(tmp_path / "off", _StopAt(3), tiny_split, checkpoint=False)
    assert not (tmp_path / "off" / ".checkpoints").exists()
    with pytest.raises(_Stop):
        _ncf_grid(tmp_path / "every", _StopAt(3), tiny_split, checkpoint_every=2)
    rep = _StopAt()
    _ncf_grid(tmp_path / "every", rep, tiny_split, checkpoint_every=2)
    assert rep.messages == ["resuming tiny · ncf · seed 0 at epoch 3/4"]  # epoch 3 was not saved
    with pytest.raises(_Stop):
        _ncf_grid(tmp_path / "elsewhere", _StopAt(2), tiny_split, checkpoint_dir=tmp_path / "ck")
    assert len(list((tmp_path / "ck").rglob("*.ckpt"))) == 1


def test_keep_checkpoints_leaves_the_finished_fits_file(tiny_split, tmp_path: Path) -> None:
    """By default a landed record removes its fit's checkpoint; with keep_checkpoints the file
    stays, holds the fit's last epoch, and a rerun still skips the cell (the record exists)."""
    from recbench.checkpoint import read

    _ncf_grid(tmp_path / "default", Reporter(), tiny_split)
    assert not list((tmp_path / "default" / ".checkpoints").rglob("*.ckpt"))
    (rec,) = _ncf_grid(tmp_path / "kept", Reporter(), tiny_split, keep_checkpoints=True)
    (ckpt,) = (tmp_path / "kept" / ".checkpoints").rglob("*.ckpt")
    assert ckpt.name == f"seed0-{rec.data['key']}.ckpt"
    meta, _groups = read(ckpt)
    assert meta["epoch"] == 4 and meta["key"] == rec.data["key"]
    assert rec.path is not None
    written = rec.path.stat().st_mtime_ns
    rep = _StopAt(1)  # a fit would stop at its first epoch: the cell is skipped instead
    (again,) = _ncf_grid(tmp_path / "kept", rep, tiny_split, keep_checkpoints=True)
    assert again.data["key"] == rec.data["key"] and rec.path.stat().st_mtime_ns == written
    assert not any("resuming" in m for m in rep.messages)


def test_checkpoint_format_refuses_damage() -> None:
    import torch

    blob = encode(
        {"epoch": 3}, {"module": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "s": torch.tensor(2.5)}}
    )
    meta, groups = decode(blob)
    assert meta == {"epoch": 3} and torch.equal(groups["module"]["w"], torch.arange(6.0).reshape(2, 3))
    assert groups["module"]["s"].shape == () and float(groups["module"]["s"]) == 2.5
    for bad in (blob[:-1], blob[:40], b"PK" + blob[2:], blob.replace(b"RECBENCH", b"RECBENCX", 1)):
        with pytest.raises(CheckpointError):
            decode(bad)


def test_records_say_what_code_made_them(tiny_split, tmp_path: Path) -> None:
    from recbench.provenance import code_version

    code_version.cache_clear()  # read once per process; a commit made since would be missed here
    (rec,) = run_grid(["tiny"], ["itempop"], RunOptions(out=tmp_path), split_loader=lambda _n: tiny_split)
    code = rec["code"]
    assert code["version"]
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert code["commit"] == head and isinstance(code["dirty"], bool)

"""Runs: ``kill -9`` in the middle of a grid, two concurrent runs on one results folder, and
truncated or invalid records on disk.

Every crash test kills a real ``recbench run`` subprocess with SIGKILL and then checks, before
any rerun, that every record JSON on disk is a complete, valid record (nothing half-written is
ever reported), that the records finished before the kill are byte-for-byte untouched, and, after
the final rerun, that they were reused (not redone) and that ``recbench report --format csv``
equals that of an uninterrupted run into another folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Split
from recbench.plan import run_grid
from recbench.results import RecordWarning, iter_records, read_record, write_record
from recbench.runner import RunOptions

from ._procs import (
    GRID_SEEDS,
    KILLER,
    N_CELLS,
    cli,
    finished_records,
    grid_args,
    home,
    json_records,
    leftovers,
    report_csv,
    report_frame,
    snapshot,
    spawn,
)

pytestmark = pytest.mark.timeout(240)
_cli = CliRunner()


class Reference:
    def __init__(self, out: Path, csv: str, seconds: float, cell_seconds: float) -> None:
        self.out, self.csv, self.seconds, self.cell_seconds = out, csv, seconds, cell_seconds


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The grid run once, uninterrupted, with its own cache and results folder (the real
    command, in this process: the killed runs are separate processes anyway)."""
    base = tmp_path_factory.mktemp("reference")
    out = base / "results"
    t0 = time.perf_counter()
    with home(base / "home"):
        r = cli(grid_args(out))
    seconds = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    recs = finished_records(out)
    assert len(recs) == N_CELLS
    cell = float(np.mean([sum(v for k, v in r["timing"].items() if k.endswith("_s")) for r in recs]))
    return Reference(out, report_csv(out), seconds, cell)


def _finished_json(out: Path) -> dict[str, str]:
    """Finished record JSONs and the ranks files they use → sha256."""
    snap = snapshot(out)
    keep = {}
    for p in json_records(out):
        rel = str(p.relative_to(out / "records"))
        keep[rel] = snap[rel]
        rf = json.loads(p.read_text())["ranks_file"]
        rrel = str(p.with_name(rf).relative_to(out / "records"))
        keep[rrel] = snap[rrel]
    return keep


def _assert_untouched(before: dict[str, str], out: Path) -> None:
    after = snapshot(out)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"finished records changed or vanished: {changed}"


def _reported_cells(out: Path) -> int:
    """How many (model, seed) cells `recbench report` counts: must be exactly the finished ones."""
    if not json_records(out):
        return 0
    df = report_frame(report_csv(out))
    return int(df[(df.protocol == "sampled") & (df.metric == "hr@10")].n_seeds.sum())


def _skipped_lines(log: str) -> int:
    return len(re.findall(r"record exists, skipped", log))


def _fitted_lines(log: str) -> int:
    return len(re.findall(r"^✓ ", log, flags=re.M))


def _final_rerun(out: Path, reference: Reference, f: Any) -> None:
    """Rerun the grid to completion (the real command, in this process) and check resume, reuse
    and the final report."""
    before = _finished_json(out)
    n_before = len(json_records(out))
    r = cli(grid_args(out))
    assert r.exit_code == 0, r.output
    text = r.output
    recs = finished_records(out)
    assert len(recs) == N_CELLS
    _assert_untouched(before, out)
    assert _skipped_lines(text) == n_before, text
    assert _fitted_lines(text) == N_CELLS - n_before, text
    assert leftovers(out) == {"tmp": [], "orphan_ranks": []}
    csv = report_csv(out)
    assert csv == reference.csv
    f.observed(
        f"the rerun reused all {n_before} finished records unchanged (byte-identical), fitted the "
        f"other {N_CELLS - n_before}, cleaned up every temp and orphan file, and its "
        f"`report --format csv` is identical to an uninterrupted run's"
    )


# ----------------------------------------------------------------------------- kill -9


def test_kill9_at_random_points(fault: Any, reference: Reference, tmp_path: Path) -> None:
    seed = int(os.environ.get("RECBENCH_KILL_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    out = tmp_path / "results"
    n_kills = 4
    killed_with_work_left = 0
    for i in range(n_kills):
        n_done = len(json_records(out))
        if n_done == N_CELLS:
            break
        with fault(
            f"`kill -9` of `recbench run` at a random point of the grid (kill {i + 1} of {n_kills})", "runs"
        ) as f:
            before = _finished_json(out)
            p = spawn(grid_args(out), tmp_path / f"kill{i}.log")
            t0 = time.perf_counter()
            if i == 0:  # anywhere from interpreter start-up through the split build to the first record
                deadline = t0 + rng.uniform(0.05, 4.0)
                while time.perf_counter() < deadline and not json_records(out) and p.poll() is None:
                    time.sleep(0.005)
            else:  # once the next record is finished, at a random point of the cell after it
                target = n_done + 1
                while len(json_records(out)) < target and p.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, max(0.05, 1.5 * reference.cell_seconds)))
            at = time.perf_counter() - t0
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                killed_with_work_left += 1
            rc = p.wait(timeout=60)
            recs = finished_records(out)  # every JSON on disk is complete and valid
            _assert_untouched(before, out)
            assert _reported_cells(out) == len(recs)
            left = leftovers(out)
            state = (
                f"killed {at:.2f} s after start (seed {seed})"
                if rc == -signal.SIGKILL
                else f"finished on its own before the kill point ({at:.2f} s, seed {seed})"
            )
            f.observed(
                f"{state}: {len(recs)} of {N_CELLS} records on disk, every one complete and valid "
                f"(no record warning) and counted by `report`, the {n_done} finished before untouched; "
                f"{len(left['tmp'])} temp file(s) and {len(left['orphan_ranks'])} ranks file(s) "
                f"without a JSON left by the dead writer, which no reader treats as a record"
            )
    assert killed_with_work_left >= n_kills - 1, f"only {killed_with_work_left} kills landed mid-grid (seed {seed})"
    with fault("clean rerun after the random kills", "runs", counted=False) as f:
        _final_rerun(out, reference, f)


# (kind, n, point): kill at the n-th write of a record's ranks file or JSON of the process
KILL_POINTS = [
    ("ranks", 2, "partial", "while a record's ranks temp file is half written"),
    ("ranks", 2, "after", "after a record's ranks file is in place, before its JSON is written"),
    ("json", 2, "before-rename", "after a record's JSON temp file is written and fsynced, before the rename"),
    ("json", 2, "after", "just after a record's JSON is renamed into place"),
]


def test_kill9_at_each_point_of_the_write_protocol(fault: Any, reference: Reference, tmp_path: Path) -> None:
    out = tmp_path / "results"
    for kind, n, point, words in KILL_POINTS:
        with fault(f"`kill -9` of `recbench run` {words}", "runs") as f:
            n_done = len(json_records(out))
            before = _finished_json(out)
            log = tmp_path / f"{kind}-{point}.log"
            p = spawn([kind, n, point, "--", *grid_args(out)], log, command=KILLER)
            assert p.wait(timeout=120) == -signal.SIGKILL, log.read_text()
            assert "[killer] SIGKILL" in log.read_text()
            recs = finished_records(out)
            expected = n_done + (2 if (kind, point) == ("json", "after") else 1)
            assert len(recs) == expected
            _assert_untouched(before, out)
            assert _reported_cells(out) == len(recs)
            left = leftovers(out)
            f.observed(
                f"the first record of the process is finished and valid, the killed one "
                f"{'is finished too (its JSON was in place)' if expected == n_done + 2 else 'does not exist as a record'}"  # noqa: E501
                f"; {len(recs)} records on disk, all valid and exactly those counted by `report`, "
                "earlier ones untouched; "
                f"{len(left['tmp'])} temp and {len(left['orphan_ranks'])} orphan ranks file(s) ignored by readers"
            )
    with fault("clean rerun after the write-point kills", "runs", counted=False) as f:
        _final_rerun(out, reference, f)
    # a --force rewrite killed between the new ranks file and the new JSON must not destroy the
    # finished record it was replacing
    for kind, point, words in [("ranks", "after", "between a cell's new ranks file and its new JSON")]:
        with fault(f"`kill -9` of a `--force` rerun of a finished grid {words}", "runs") as f:
            before = _finished_json(out)
            log = tmp_path / f"force-{kind}-{point}.log"
            p = spawn([kind, 1, point, "--", *grid_args(out), "--force"], log, command=KILLER)
            assert p.wait(timeout=120) == -signal.SIGKILL, log.read_text()
            recs = finished_records(out)
            assert len(recs) == N_CELLS
            _assert_untouched(before, out)
            assert report_csv(out) == reference.csv
            f.observed(
                f"all {N_CELLS} previous records still complete and valid (the new ranks file has "
                f"its own content-derived name, so the old JSON still finds its own ranks); "
                f"report unchanged"
            )


# ----------------------------------------------------------------------------- concurrency


def test_two_concurrent_runs_on_one_results_folder(fault: Any, reference: Reference, tmp_path: Path) -> None:
    with fault(
        "two `recbench run` processes on one results folder at once (same grid, opposite seed order, shared cache)",
        "runs",
    ) as f:
        out = tmp_path / "results"
        a = spawn(grid_args(out), tmp_path / "a.log")
        b = spawn(grid_args(out, seeds=tuple(reversed(GRID_SEEDS))), tmp_path / "b.log")
        assert a.wait(timeout=180) == 0, (tmp_path / "a.log").read_text()
        assert b.wait(timeout=180) == 0, (tmp_path / "b.log").read_text()
        logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
        recs = finished_records(out)
        assert len(recs) == N_CELLS
        assert len({r.key for r in recs}) == N_CELLS
        assert leftovers(out) == {"tmp": [], "orphan_ranks": []}
        fitted, skipped = _fitted_lines(logs), _skipped_lines(logs)
        assert fitted == N_CELLS and skipped == N_CELLS, logs
        assert report_csv(out) == reference.csv
        f.observed(
            f"both exit 0; {N_CELLS} records, one per cell, all valid, no temp or orphan files; "
            f"each cell was fitted exactly once ({fitted} fits, {skipped} skips across the two: the "
            f"per-cell file lock makes the second process wait and then reuse the first's record); "
            f"report identical to a single uninterrupted run's"
        )


@pytest.fixture(scope="module")
def small() -> Split:
    data = make_synthetic(n_users=80, n_items=200, mean_interactions=15, seed=3, name="small")
    return leave_one_out(data, seed=0)


def _grid(split: Split, out: Path, models: list[str], seeds: tuple[int, ...] = (0,), **kw: Any) -> list:
    return run_grid([split.dataset], models, RunOptions(out=out, seeds=seeds, **kw), split_loader=lambda _: split)


def test_interleaved_writers_of_one_cell(
    fault: Any, small: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers of the same cell, without the lock (library callers of ``write_record``):
    A writes its ranks, B writes ranks and JSON, then A writes its JSON."""
    from recbench import results

    with fault("two writers of one cell interleaved: ranks A, ranks B, JSON B, JSON A (no lock)", "runs") as f:
        rec = _grid(small, tmp_path, ["itempop"])[0]
        a = read_record(rec.path)
        b = read_record(rec.path)
        b.ranks = {k: v[::-1].copy() for k, v in b.ranks.items()}  # other content
        b.data["created"] = "writer B"
        original = results.write_bytes_atomic
        done = {"b": False}

        def interleave(path: Path, data: bytes) -> None:
            if path.suffix == ".json" and not done["b"]:
                done["b"] = True
                write_record(tmp_path, b)  # B completes between A's ranks and A's JSON
            original(path, data)

        monkeypatch.setattr(results, "write_bytes_atomic", interleave)
        write_record(tmp_path, a)
        monkeypatch.setattr(results, "write_bytes_atomic", original)
        final = read_record(rec.path)  # raises if the JSON points at the other writer's ranks
        assert final.data["created"] != "writer B"
        assert all(np.array_equal(final.ranks[k], a.ranks[k]) for k in a.ranks)
        f.observed(
            "the record on disk is writer A's, complete, with A's own ranks "
            "(ranks files are named by their content hash, so B's never replaced A's)"
        )


# ----------------------------------------------------------------------------- invalid records


def _flip_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _rehash(j: Path, blob: bytes) -> None:
    """Replace the ranks file by ``blob`` and make the JSON's hash match (a consistent forgery)."""
    d = json.loads(j.read_text())
    j.with_name(d["ranks_file"]).write_bytes(blob)
    d["ranks_sha256"] = hashlib.sha256(blob).hexdigest()
    j.write_text(json.dumps(d))


def _edit(j: Path, **changes: Any) -> None:
    d = json.loads(j.read_text())
    for k, v in changes.items():
        if v is KeyError:
            d.pop(k)
        else:
            d[k] = v
    j.write_text(json.dumps(d))


def _wrong_length_npz(j: Path) -> None:
    d = json.loads(j.read_text())
    with np.load(j.with_name(d["ranks_file"])) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["test__sampled"] = arrays["test__sampled"][:-5]
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _rehash(j, buf.getvalue())


CORRUPTIONS: list[tuple[str, Any]] = [
    ("record JSON empty (0 bytes)", lambda j: j.write_bytes(b"")),
    ("record JSON truncated mid-file", lambda j: j.write_bytes(j.read_bytes()[: len(j.read_bytes()) // 2])),
    ("record JSON replaced by binary garbage", lambda j: j.write_bytes(os.urandom(300) + b"\xff\xfe")),
    ("record JSON is a list, not an object", lambda j: j.write_text("[1, 2, 3]")),
    ("record JSON without its metrics field", lambda j: _edit(j, metrics=KeyError)),
    ("record fields of the wrong type (config: 5, protocols: 7)", lambda j: _edit(j, config=5, protocols=7)),
    ("record metrics holding a string", lambda j: _edit(j, metrics={"sampled": {"hr@10": "high"}})),
    ("record status neither ok nor failed", lambda j: _edit(j, status="maybe")),
    ("record of an unknown schema version (99)", lambda j: _edit(j, schema=99)),
    ("record's ranks file deleted", lambda j: j.with_name(json.loads(j.read_text())["ranks_file"]).unlink()),
    (
        "record's ranks file with one byte flipped",
        lambda j: _flip_byte(j.with_name(json.loads(j.read_text())["ranks_file"])),
    ),
    (
        "record's ranks file truncated",
        lambda j: (lambda r: r.write_bytes(r.read_bytes()[:100]))(j.with_name(json.loads(j.read_text())["ranks_file"])),
    ),
    (
        "record's ranks file replaced by other bytes, hash in the JSON updated to match",
        lambda j: _rehash(j, b"not an npz file at all"),
    ),
    ("record's rank arrays of the wrong length, hash updated to match", _wrong_length_npz),
    (
        "record whose ranks_file points outside its folder (../../x)",
        lambda j: _edit(j, ranks_file="../../" + json.loads(j.read_text())["ranks_file"]),
    ),
    ("a directory named like a record (*.json)", None),
]


def test_report_skips_truncated_and_invalid_records(fault: Any, small: Split, tmp_path: Path) -> None:
    out = tmp_path / "results"
    _grid(small, out, ["itempop", "bpr"], seeds=(0, 1), overrides={"bpr": {"epochs": "3"}})
    pristine = report_csv(out)
    template = read_record(next(p for p in json_records(out) if "itempop" in str(p)))
    victims: list[tuple[str, Path]] = []
    for i, (name, corrupt) in enumerate(CORRUPTIONS):
        if corrupt is None:
            d = out / "records" / "small" / "itempop" / f"seed{100 + i}-dir.json"
            d.mkdir(parents=True)
            victims.append((name, d))
            continue
        clone = read_record(template.path)  # another cell of the same grid, then corrupted
        clone.data["seed"] = 100 + i
        clone.data["key"] = hashlib.sha256(str(i).encode()).hexdigest()[:16]
        path = write_record(out, clone)
        corrupt(path)
        victims.append((name, path))
    stray = out / "records" / "small" / "itempop" / ".seed0-0123456789abcdef.json.k2j3h4.tmp"
    stray.write_bytes(b'{"schema": 1, "key": "partial')

    r = _cli.invoke(app, ["report", "--results", str(out), "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert r.stdout == pristine  # every bad record skipped, every good one still counted
    warn_lines = [ln for ln in r.stderr.splitlines() if "skipped" in ln]
    for name, path in victims:
        with fault(name, "runs") as f:
            mine = [ln for ln in warn_lines if path.name in ln]
            assert len(mine) == 1, (name, r.stderr)
            assert mine[0].startswith("warning:"), mine[0]
            f.observed(
                "`report` exits 0 with the other records' table unchanged and warns: "
                f"“{mine[0].replace(str(out), 'RESULTS')}”"
            )
    with fault("temp file of a killed writer (.seedN-KEY.json.XXXX.tmp) beside the records", "runs") as f:
        assert stray.name not in r.stderr
        f.observed(
            "not a record name: ignored by `report` without a warning; `run` deletes it when it next visits the cell"
        )
    with fault("`report --format markdown` on the same folder", "runs", counted=False) as f:
        r2 = _cli.invoke(app, ["report", "--results", str(out)])
        assert r2.exit_code == 0 and "| small" in r2.stdout, r2.output
        f.observed(
            "exit 0, the table of the valid records, "
            f"{len([ln for ln in r2.stderr.splitlines() if 'skipped' in ln])} warnings"
        )


def test_run_redoes_a_corrupt_or_misplaced_record(fault: Any, small: Split, tmp_path: Path) -> None:
    out = tmp_path / "results"
    first = {r["seed"]: r for r in _grid(small, out, ["itempop"], seeds=(0, 1))}
    with fault("the record of a cell in the grid truncated, then `run` again", "runs") as f:
        p0 = first[0].path
        p0.write_bytes(p0.read_bytes()[:50])
        with pytest.warns(RecordWarning, match="will redo") as w:
            again = _grid(small, out, ["itempop"], seeds=(0,))
        assert read_record(again[0].path).status == "ok"
        f.observed(
            "the cell is redone and a valid record written; "
            f"warning: “{str(w[0].message).replace(str(out), 'RESULTS')}”"
        )
    with fault("another cell's record copied over a cell's record file", "runs") as f:
        p0, p1 = first[0].path, first[1].path
        shutil.copyfile(p1, p0)
        with pytest.warns(RecordWarning, match="another cell") as w:
            again = _grid(small, out, ["itempop"], seeds=(0,))
        assert again[0]["seed"] == 0 and read_record(p0)["seed"] == 0
        f.observed(
            f"not reused for the wrong cell: redone; warning: “{str(w[0].message).replace(str(out), 'RESULTS')}”"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordWarning)
        assert sorted(r["seed"] for r in iter_records(out)) == [0, 1]

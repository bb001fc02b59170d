"""``recbench run --portable-floats``: float kernels chosen so that another x86-64 CPU with AVX2
reruns a record bit for bit (:mod:`recbench.numerics`). Here: the mode takes effect in a fresh
process (record, key, kernels), changes the numbers (so the switches are not inert), is rerun by
``--from-record`` in its own mode and exactly, and is refused where it cannot take effect.
Whether its bits match across CPU *vendors* is checked by the published portable NCF record
(``tests/reliability/test_published.py``) on whatever machine runs the suite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.models.base import ConfigError
from recbench.numerics import PORTABLE_ENV, ensure_floats, prepare_portable_env, record_floats
from recbench.results import iter_records

from ._procs import child_env, recbench

GRID = ["run", "-d", "synthetic", "-m", "ncf", "--set", "ncf.epochs=2", "--protocol", "both", "--threads", "1"]


@pytest.fixture(scope="module")
def native_and_portable(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("floats")
    env = child_env(RECBENCH_HOME=str(base / "home"))
    for k in PORTABLE_ENV:
        env.pop(k, None)
    for name, extra in (("native", []), ("portable", ["--portable-floats"])):
        r = recbench([*GRID, *extra, "--out", str(base / name)], env=env, timeout=200)
        assert r.returncode == 0, r.stderr
    return base / "native", base / "portable", env


def test_portable_records_say_so_and_differ_from_native(native_and_portable: tuple[Path, Path, dict]) -> None:
    native_dir, portable_dir, _ = native_and_portable
    (native,), (portable,) = list(iter_records(native_dir)), list(iter_records(portable_dir))
    assert "floats" not in native.data and portable["floats"] == "portable"
    assert native.key != portable.key  # a resume never mixes the two
    assert portable["hardware"]["isa"] == "AVX2" and portable["hardware"]["float_env"] == PORTABLE_ENV
    assert "float_env" not in native["hardware"]
    assert record_floats(portable.path) == "portable" and record_floats(native.path) == "native"
    # (this small NCF's two epochs happen to round alike in both modes: the kernels' difference
    # is shown below, on a matrix product of ml-100k's sizes)


PROBE = """
import sys
from recbench.numerics import floats_in_use, prepare_portable_env
if sys.argv[1] == "portable":
    prepare_portable_env()
import torch
torch.manual_seed(0)
a, b = torch.randn(256, 131), torch.randn(131, 67)
print(floats_in_use(), (a @ b).numpy().tobytes().hex())
"""


def test_the_portable_kernels_round_otherwise(tmp_path: Path) -> None:
    """The switches act: the same matrix product in a fresh process in each mode gives other
    last bits (measured: oneMKL's COMPATIBLE branch; the AVX2 ATen kernels differ elsewhere)."""
    import subprocess
    import sys

    env = child_env()
    for k in PORTABLE_ENV:
        env.pop(k, None)
    out = {}
    for mode in ("native", "portable"):
        p = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
        got_mode, hexbytes = p.stdout.split()
        assert got_mode == mode
        out[mode] = np.frombuffer(bytes.fromhex(hexbytes), dtype=np.float32)
    assert not np.array_equal(out["native"], out["portable"])
    assert np.allclose(out["native"], out["portable"], rtol=1e-4, atol=1e-4)  # other roundings of one product


def test_from_record_reruns_a_portable_record_exactly_in_its_mode(
    native_and_portable: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    _, portable_dir, env = native_and_portable
    (old,) = list(iter_records(portable_dir))
    r = recbench(["run", "--from-record", str(old.path), "--out", str(tmp_path)], env=env, timeout=200)
    assert r.returncode == 0, r.stderr
    assert "identical metrics to the record" in r.stderr
    (new,) = list(iter_records(tmp_path))
    assert new.key == old.key and new["floats"] == "portable"
    for k in old.ranks:
        assert np.array_equal(new.ranks[k], old.ranks[k]), k


def test_portable_floats_on_a_native_record_is_refused(
    native_and_portable: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    native_dir, _, env = native_and_portable
    (old,) = list(iter_records(native_dir))
    r = recbench(["run", "--from-record", old.path, "--portable-floats", "--out", tmp_path], env=env, timeout=60)
    assert r.returncode != 0 and "made with native floats" in r.stderr


def test_a_native_fit_in_a_portable_environment_is_refused(
    native_and_portable: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    """A native key on portable numbers would mislabel the record."""
    *_, env = native_and_portable
    r = recbench([*GRID, "--out", tmp_path], env={**env, **PORTABLE_ENV}, timeout=60)
    assert r.returncode != 0 and "--portable-floats" in r.stderr and len(r.stderr.strip().splitlines()) <= 3


def test_in_a_process_that_loaded_torch_natively_the_mode_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch  # noqa: F401 - loaded, as in every test process

    for k in PORTABLE_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ConfigError, match="torch was loaded before"):
        prepare_portable_env()
    with pytest.raises(ConfigError, match="torch was loaded before"):
        ensure_floats("portable")
    ensure_floats("native")  # fine
    with pytest.raises(ConfigError, match="valid: native, portable"):
        ensure_floats("fast")
    r = CliRunner().invoke(app, [*GRID, "--portable-floats", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "torch was loaded before" in r.output


def test_record_floats_of_a_file_that_is_not_a_record(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text(json.dumps([1]))
    assert record_floats(tmp_path / "bad.json") == record_floats(tmp_path / "list.json") == "native"
    assert record_floats(tmp_path / "missing.json") == "native"

"""Security: nothing in the package loads pickles (from the cache, the results or anywhere), torch
checkpoints only with ``weights_only=True``, no shell is run; crafted records and names cannot
execute code or reach outside their folders. (Safe extraction of downloaded archives is tested
with the downloads, in ``test_downloads.py``.)

The static part scans the code of ``recbench/`` and ``baselines/`` with comments and string
literals removed (so prose such as "never pickle" in a docstring does not count), plus an AST
check of ``torch.load`` and ``np.load`` keyword arguments.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tokenize
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.plan import run_grid
from recbench.results import RecordWarning, iter_records, read_record
from recbench.runner import RunOptions

from ._procs import REPO

PACKAGES = [REPO / "recbench", REPO / "baselines"]

# (what, regex over code with comments and strings removed)
FORBIDDEN: list[tuple[str, str]] = [
    (
        "a pickle-family module (pickle, cPickle, dill, joblib, shelve, marshal, cloudpickle)",
        r"\b(c?[Pp]ickle|dill|joblib|shelve|marshal|cloudpickle)\b",
    ),
    ("allow_pickle=True", r"\ballow_pickle\s*=\s*True\b"),
    ("pandas read_pickle / to_pickle", r"\b(read|to)_pickle\b"),
    ("shell=True", r"\bshell\s*=\s*True\b"),
    ("os.system / os.popen / os.exec* / os.spawn*", r"\bos\s*\.\s*(system|popen|exec\w*|spawn\w*)\b"),
    ("builtin eval() / exec()", r"(?<![\w.])(eval|exec)\s*\("),
    (
        "torch's load imported by name (hides torch.load from the keyword check)",
        r"from\s+torch(\.serialization)?\s+import\s+[^\n]*\bload\b",
    ),
]


def code_only(source: str) -> str:
    """``source`` with comments and string literals (docstrings included) blanked out, the rest
    in place."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    chars = list(source)
    blank = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in blank:
            a = starts[tok.start[0] - 1] + tok.start[1]
            b = starts[tok.end[0] - 1] + tok.end[1]
            chars[a:b] = [c if c == "\n" else " " for c in chars[a:b]]
    return "".join(chars)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def scan(source: str, where: str = "<string>") -> list[str]:
    """Every unsafe pattern in ``source``, as ``where: what`` strings."""
    found = [f"{where}: {what}" for what, rx in FORBIDDEN if re.search(rx, code_only(source))]
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        if name == "torch.load" or name.endswith("serialization.load"):
            ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
            if not ok:
                found.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            ok = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
            if not ok:
                found.append(f"{where}:{node.lineno}: {name} without an explicit allow_pickle=False")
    return found


def _package_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py"))


def test_no_pickle_no_shell_in_the_package(fault: Any) -> None:
    files = _package_files()
    with fault(
        f"static scan of the package ({len(files)} files) for pickle loading and shells", "security", counted=False
    ) as f:
        assert len(files) > 15
        problems = [p for path in files for p in scan(path.read_text(), str(path.relative_to(REPO)))]
        assert problems == []
        loads = sum(len(re.findall(r"\b(np|numpy)\.load\s*\(", code_only(p.read_text()))) for p in files)
        f.observed(
            f"none found: no pickle-family module, allow_pickle=True, read_pickle, shell=True, "
            f"os.system/popen/exec, eval/exec; all {loads} np.load calls pass allow_pickle=False; "
            f"no torch.load at all"
        )


PLANTED = [
    "import pickle\nx = pickle.loads(b'')\n",
    "from joblib import load\n",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)\n",
    "import numpy as np\nnp.load('x.npy')\n",
    "import torch\ntorch.load('m.pt')\n",
    "import torch\ntorch.load('m.pt', weights_only=False)\n",
    "from torch import load\nload('m.pt', weights_only=True)\n",
    "import pandas as pd\npd.read_pickle('x')\n",
    "import subprocess\nsubprocess.run(cmd, shell=True)\n",
    "import os\nos.system('ls ' + name)\n",
    "eval(user_input)\n",
]


def test_the_scanner_catches_what_it_must(fault: Any) -> None:
    with fault(f"{len(PLANTED)} unsafe calls planted one by one in a scratch module", "security", counted=False) as f:
        missed = [src for src in PLANTED if not scan(src)]
        assert missed == []
        clean = (
            '"""Never pickle; np.load(allow_pickle=True) in prose."""\nimport numpy as np\n# pickle\n'
            "np.load(p, allow_pickle=False)\nm.eval()\n"
        )
        assert scan(clean) == []
        f.observed("each flagged; prose in docstrings/comments and `module.eval()` are not")


# ----------------------------------------------------------------------------- crafted input


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_pickle_inside_a_ranks_file_is_never_loaded(fault: Any, tmp_path: Path) -> None:
    split = leave_one_out(make_synthetic(n_users=60, n_items=150, mean_interactions=20, seed=1, name="tiny"), seed=0)
    out = tmp_path / "results"
    rec = run_grid(["tiny"], ["itempop"], RunOptions(out=out), split_loader=lambda _: split)[0]
    marker = tmp_path / "PWNED"
    buf = io.BytesIO()
    np.savez(buf, users=np.array([_Payload(marker)], dtype=object), test__sampled=np.zeros(1, np.int32))
    blob = buf.getvalue()
    assert b"PWNED" in blob and b"touch" in blob  # the payload really is a pickle
    d = json.loads(rec.path.read_text())
    rec.path.with_name(d["ranks_file"]).write_bytes(blob)
    d["ranks_sha256"] = hashlib.sha256(blob).hexdigest()  # a consistent forgery
    rec.path.write_text(json.dumps(d))
    with fault(
        "a record's ranks file replaced by an npz holding a pickled object that runs code when loaded "
        "(hash forged to match)",
        "security",
    ) as f:
        with pytest.raises(ValueError, match="unreadable") as e:
            read_record(rec.path)
        with pytest.warns(RecordWarning):
            assert list(iter_records(out)) == []
        r = CliRunner().invoke(app, ["report", "--results", str(out), "--format", "csv"])
        assert r.exit_code == 0
        with pytest.warns(RecordWarning, match="will redo"):
            again = run_grid(["tiny"], ["itempop"], RunOptions(out=out), split_loader=lambda _: split)[0]
        assert again.status == "ok" and read_record(again.path).status == "ok"
        assert not marker.exists()
        f.observed(
            f"never unpickled (no file created): read as invalid — “{str(e.value).split(': ', 1)[1]}”; "
            "`report` skips it, `run` redoes the cell"
        )


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        (
            "--dataset with path traversal (../../outside)",
            ["run", "-d", "../../outside", "-m", "itempop"],
            "unknown dataset '../../outside'",
        ),
        (
            "--models with path traversal (../../outside)",
            ["run", "-d", "synthetic", "-m", "../../outside"],
            "unknown model '../../outside'",
        ),
        (
            "--set value with shell syntax (bpr.epochs=$(touch PWNED))",
            ["run", "-d", "synthetic", "-m", "bpr", "--set", "bpr.epochs=$(touch PWNED)`touch PWNED`"],
            "expected an integer",
        ),
    ],
)
def test_hostile_names_and_values(
    fault: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, args: list[str], needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with fault(name, "security") as f:
        out = tmp_path / "a" / "b" / "results"
        r = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert r.exit_code == 2, r.output
        line = next(ln for ln in r.output.splitlines() if ln.startswith("error:"))
        assert needle in line
        assert (
            not (tmp_path / "a").exists() and not (tmp_path / "outside").exists() and not (tmp_path / "PWNED").exists()
        )
        f.observed(f"treated as data, exit 2, nothing written anywhere: “{line}”")


def test_a_record_naming_a_path_outside_cannot_redirect_from_record(fault: Any, tmp_path: Path) -> None:
    split = leave_one_out(make_synthetic(n_users=60, n_items=150, mean_interactions=20, seed=1, name="tiny"), seed=0)
    rec = run_grid(["tiny"], ["itempop"], RunOptions(out=tmp_path / "src"), split_loader=lambda _: split)[0]
    with fault("`--from-record` of a record whose dataset is '../../../outside'", "security") as f:
        d = json.loads(rec.path.read_text())
        d["dataset"] = "../../../outside"
        rec.path.write_text(json.dumps(d))
        out = tmp_path / "deep" / "er" / "results"
        r = CliRunner().invoke(app, ["run", "--from-record", str(rec.path), "--out", str(out)])
        assert r.exit_code == 2, r.output
        line = next(ln for ln in r.output.splitlines() if ln.startswith("error:"))
        assert "unknown dataset '../../../outside'" in line
        assert not (tmp_path / "deep").exists() and not (tmp_path / "outside").exists()
        f.observed(f"exit 2, nothing written: “{line}”")

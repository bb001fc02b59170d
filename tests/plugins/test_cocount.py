"""A model defined outside the package: the shipped contract test runs on it, and ``recbench
run --models module:Class`` benchmarks it (in this process, in worker processes, from its
record); the README's example is this very file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.plan import cell_from_record
from recbench.registry import PLUGINS, get_model_class
from recbench.results import iter_records
from recbench.testing import ModelContract

from .cocount import CoCount

REPO = Path(__file__).resolve().parents[2]
REF = "tests.plugins.cocount:CoCount"


class TestCoCountContract(ModelContract):
    model_class = CoCount


def test_the_readme_example_is_this_model() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Adding a model.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    body = (Path(__file__).with_name("cocount.py")).read_text().split('"""', 2)[2].lstrip("\n")
    assert block.group(1).strip() == body.strip()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_run_a_model_by_module_and_class(jobs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import it too
    r = CliRunner().invoke(
        app, ["run", "--dataset", "synthetic", "--models", f"{REF},itempop", "--jobs", jobs, "--out", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    recs = {rec["model"]: rec for rec in iter_records(tmp_path)}
    assert recs["cocount"].status == "ok" and recs["cocount"]["model_ref"] == REF
    assert recs["cocount"]["metrics"]["sampled"]["hr@10"] > recs["itempop"]["metrics"]["sampled"]["hr@10"]
    cell = cell_from_record(recs["cocount"].data)
    assert cell.ref == REF and cell.build().name == "cocount"


def test_a_class_that_is_not_a_model_is_refused() -> None:
    bad = CliRunner().invoke(app, ["run", "--dataset", "synthetic", "--models", "tests.plugins.cocount:CoCountConfig"])
    assert bad.exit_code == 2 and "not a recbench model" in bad.output
    nosuch = CliRunner().invoke(app, ["run", "--dataset", "synthetic", "--models", "tests.plugins.nosuch:X"])
    assert nosuch.exit_code == 2 and "cannot import" in nosuch.output
    assert get_model_class(REF) is PLUGINS["cocount"]

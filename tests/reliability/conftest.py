"""Reliability suite plumbing: the ``fault`` recorder (helpers to run ``recbench`` for real are
in ``_procs.py``; ``_killer.py`` SIGKILLs a run at an exact point of the record writes).

Every fault a test injects is recorded with the ``fault`` fixture::

    def test_truncated_record(fault):
        with fault("record JSON truncated mid-file", "runs") as f:
            ...                      # inject the fault, exercise the product
            f.observed(f"report exits 0 and warns: {line}")   # what the product did

An entry holds the fault, its category, the test that injected it, what the product was seen to
do (``observed``; several calls are joined) and whether the expectation held (the ``with`` block
and the test both passed). With ``RECBENCH_FAULT_LOG=PATH`` set, the entries are written to PATH
as JSON at the end of the session; ``python -m tests.reliability.make_doc`` runs the suite that
way and renders ``docs/reliability.md`` from the log, so the table comes from the tests.
Categories used by the table, in order: downloads, parsers, cache, runs, models, configuration,
reproducibility, security (others are appended). ``fault(name, category, counted=False)`` lists a
verification step (e.g. the clean rerun after a series of kills) without counting it as a fault.

Set ``RECBENCH_KILL_SEED`` to replay the random kill points of ``test_runs.py`` (the seed is in
each kill's row of the table).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

FAULT_LOG_ENV = "RECBENCH_FAULT_LOG"


# ----------------------------------------------------------------------------- fault log


@dataclass
class FaultEntry:
    name: str
    category: str
    test: str
    observed: list[str] = field(default_factory=list)
    counted: bool = True  # False: a verification step listed beside the faults, not a fault
    outcome: str = "running"  # passed | failed | known gap (xfail) | running
    error: str | None = None
    seconds: float = 0.0


_ENTRIES: list[FaultEntry] = []


class FaultRecorder:
    """What one injected fault did; returned by ``with fault(...) as f``."""

    def __init__(self, entry: FaultEntry) -> None:
        self.entry = entry

    def observed(self, text: str) -> None:
        """Record what the product did (in words a reader of docs/reliability.md understands).
        pytest's temporary folders are shortened to ``$TMP``."""
        text = re.sub(r"/\S*?/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+", "$TMP", str(text))
        self.entry.observed.append(" ".join(text.split()))


@pytest.fixture
def fault(request: pytest.FixtureRequest):
    """``fault(name, category, counted=True)``: a context manager that records one injected
    fault (``counted=False``: a verification step, such as the clean rerun after a series of
    kills, listed in the table but not counted as a fault)."""
    node = request.node.nodeid

    @contextmanager
    def _fault(name: str, category: str, counted: bool = True) -> Iterator[FaultRecorder]:
        entry = FaultEntry(name=name, category=category, test=node, counted=counted)
        _ENTRIES.append(entry)
        t0 = time.perf_counter()
        try:
            yield FaultRecorder(entry)
        except BaseException as e:
            entry.outcome = "failed"
            entry.error = (str(e).splitlines() or [type(e).__name__])[0][:300]
            raise
        else:
            entry.outcome = "passed"  # downgraded below if the test fails later
        finally:
            entry.seconds = time.perf_counter() - t0

    return _fault


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    report = yield
    if getattr(report, "wasxfail", None) is not None:  # an expected failure: a known gap
        for e in _ENTRIES:
            if e.test == item.nodeid:
                e.outcome = "known gap"
                e.error = report.wasxfail.removeprefix("reason: ")
    elif report.failed:
        for e in _ENTRIES:
            if e.test == item.nodeid and e.outcome != "failed":
                e.outcome = "failed"
                e.error = e.error or f"test failed in {report.when}"
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(FAULT_LOG_ENV)
    if not path or not _ENTRIES:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    out = Path(path)
    if worker:  # one file per xdist worker; make_doc merges them
        out = out.with_name(f"{out.stem}.{worker}{out.suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "python": sys.version.split()[0],
                "platform": sys.platform,
                "exitstatus": int(exitstatus),
                "faults": [asdict(e) for e in _ENTRIES],
            },
            indent=1,
        )
        + "\n"
    )

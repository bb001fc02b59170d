"""What the ``recbench`` commands share: option types (``Annotated``, defined once, with their
help and validation), choice enums, the one-line error and value parsers.

An option used by several commands is declared here once, e.g. ``data_dir: DataDir = None``;
its help and checks are then the same everywhere (``--threads 1``, ``--device`` validated
before any work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from recbench.models.base import ConfigError

err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def first_line(e: BaseException) -> str:
    """An exception's message as a one-line error (its type when it has no message)."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def warn(message: str) -> None:
    """One ``warning:`` line on stderr."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Python warnings (a record that will be redone, ...) as one ``warning:`` line each, never
    with a source line."""
    import warnings

    old = warnings.showwarning
    warnings.showwarning = lambda message, *_a, **_k: warn(str(message))
    try:
        yield
    finally:
        warnings.showwarning = old


def csv_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]`` (None or blank: empty)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_seeds(value: str, option: str = "--seeds") -> tuple[int, ...]:
    """Comma-separated, distinct, non-negative integers; a ConfigError naming ``option`` otherwise."""
    parts = [v.strip() for v in value.split(",")]
    if any(not p for p in parts) and any(parts):
        raise ConfigError(f"{option} {value!r}: an empty entry; expected comma-separated integers, e.g. 0,1,2")
    try:
        seeds = tuple(int(s) for s in csv_list(value))
    except ValueError:
        raise ConfigError(f"{option} {value!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ConfigError(f"{option} {value!r}: no seed given; e.g. {option} 0,1,2")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"{option} {value!r}: seeds must be ≥ 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{option} {value!r}: a seed given twice")
    return seeds


def apply_threads(threads: int) -> None:
    """torch's intra-op threads and numpy/scipy's BLAS pools (recorded in every result's
    ``hardware``); ``--threads`` was checked by its callback."""
    from recbench.executors import set_threads

    set_threads(threads)


# ----------------------------------------------------------------------------- choices


class Protocol(StrEnum):
    sampled = "sampled"
    full = "full"
    both = "both"

    def protocols(self) -> tuple[str, ...]:
        """The evaluator's protocols this choice stands for (``both``: sampled and full)."""
        return ("sampled", "full") if self is Protocol.both else (self.value,)


class ReportFormat(StrEnum):
    markdown = "markdown"
    csv = "csv"
    latex = "latex"
    json = "json"
    html = "html"


class Executor(StrEnum):
    local = "local"
    ray = "ray"


class PairedTest(StrEnum):
    wilcoxon = "wilcoxon"
    bootstrap = "bootstrap"


class CheckpointWeights(StrEnum):
    best = "best"  # the best validation epoch's (what the fit's record evaluates)
    last = "last"


E = TypeVar("E", bound=StrEnum)


def enum_parser(enum: type[E], what: str) -> Callable[[str | E], E]:
    """A Typer ``parser`` for ``enum`` whose error reads ``unknown <what> 'x'; valid: a, b``."""

    def parse(value: str | E) -> E:
        if isinstance(value, enum):
            return value
        try:
            return enum(value)
        except ValueError:
            raise typer.BadParameter(f"unknown {what} {value!r}; valid: {', '.join(enum)}") from None

    return parse


# ----------------------------------------------------------------------------- callbacks


def _check_device(value: str) -> str:
    """``--device`` before any work: cpu, cuda, cuda:N, mps or auto, and present on this machine."""
    from recbench.runner import check_device

    try:
        check_device(value)
    except ConfigError as e:
        raise fail(str(e)) from None
    return value


def _check_threads(value: int) -> int:
    if value < 0:
        raise fail(f"--threads {value}: give 0 (torch's default) or a positive count")
    return value


# ----------------------------------------------------------------------------- shared options

THREADS_HELP = (
    "torch intra-op threads, and numpy/scipy's BLAS threads (0: the libraries' defaults, one per core). "
    "1 by default: with small batches, more threads wait on each other on a busy machine (results/bench/README.md)."
)
JOBS_HELP = (
    "Cells at a time, each in its own worker process with --threads torch threads (records and numbers as with 1)."
)
SET_HELP = "Override a config value: MODEL.PARAM=VALUE (repeatable)."

DataDir = Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")]
Threads = Annotated[int, typer.Option(help=THREADS_HELP, callback=_check_threads)]
Device = Annotated[
    str, typer.Option(help="cpu, cuda, cuda:N, mps or auto (cuda when available, else cpu).", callback=_check_device)
]
Jobs = Annotated[int, typer.Option("--jobs", "-j", help=JOBS_HELP)]
Checkpoint = Annotated[
    bool,
    typer.Option(
        "--checkpoint/--no-checkpoint",
        metavar="",
        help="Checkpoint torch fits after each epoch; a rerun resumes from the last one.",
    ),
]
SplitSeed = Annotated[int, typer.Option(help="Seed of the split's candidate sampling.")]
Sets = Annotated[list[str] | None, typer.Option("--set", metavar="MODEL.PARAM=VALUE", help=SET_HELP)]
Models = Annotated[str | None, typer.Option("--models", "-m", help="Comma-separated model names; default: all.")]
Datasets = Annotated[str, typer.Option("--dataset", "-d", help="Comma-separated datasets.")]
Validation = Annotated[
    bool, typer.Option(metavar="", help="Hold out a validation item per user too (needed for early stopping).")
]
Test = Annotated[
    PairedTest,
    typer.Option(
        parser=enum_parser(PairedTest, "test"),
        metavar="[wilcoxon|bootstrap]",
        help="Paired test over users: wilcoxon or bootstrap.",
    ),
]

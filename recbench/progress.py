"""Progress of long commands: rich bars on a terminal, plain flushed lines in a log.

:func:`make_reporter` picks one: when stderr is a terminal, :class:`RichReporter` draws a bar per
running cell (several with ``--jobs``) with epochs, loss and samples/s; when it is not (``nohup
... > log``, a batch job, CI), :class:`PlainReporter` writes one line per finished epoch and one
per finished cell, so ``tail -f log`` shows a live run.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from recbench.results import Record
from recbench.runner import Reporter


def epoch_text(info: dict[str, Any]) -> str:
    """``loss 0.3124 · 291,707 samples/s · hr@10 0.612 ndcg@10 0.351`` (test, then validation)."""
    text = f"loss {info['loss']:.4f} · {info['samples_per_s']:,.0f} samples/s"
    for role in ("test", "validation"):
        if role in info:
            text += f" · {role} " + " ".join(f"{k} {v:.3f}" for k, v in info[role].items())
    return text


def cell_text(rec: Record) -> str:
    """One line for a finished cell: its metrics per protocol and fit time, or its error."""
    d = rec.data
    head = f"{d['dataset']} · {d['model']} · seed {d['seed']}"
    if rec.status != "ok":
        return f"✗ {head} failed: {d['error']}"
    shown = [*d["protocols"], *(k for k in d["metrics"] if k.startswith("validation/"))]
    m = "  ".join(f"{p}: " + " ".join(f"{k} {v:.4f}" for k, v in d["metrics"][p].items()) for p in shown)
    return f"✓ {head}  {m}  ({d['timing'].get('fit_s', 0):.1f} s fit)"


def make_reporter(console: Console) -> RichReporter | PlainReporter:
    """Rich bars when ``console`` is a terminal, else plain lines to its file."""
    return RichReporter(console) if console.is_terminal else PlainReporter(console.file)


class PlainReporter(Reporter):
    """One flushed line per event that matters in a log: epoch ends, cell ends, skips, notices."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.started: dict[str, tuple[float, int | None]] = {}

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _line(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{text} [{datetime.now():%H:%M:%S}]\n")
        stream.flush()

    def cell_start(self, cell: str, epochs: int | None) -> None:
        self.started[cell] = (time.perf_counter(), epochs)
        self._line(f"{cell}: started" + (f" ({epochs} epochs)" if epochs else ""))

    def epoch(self, cell: str, info: dict[str, Any]) -> None:
        t0, epochs = self.started.get(cell, (time.perf_counter(), None))
        of = f"/{epochs}" if epochs else ""
        self._line(f"{cell}: epoch {info['epoch']}{of} · {epoch_text(info)} · {time.perf_counter() - t0:.1f} s elapsed")

    def phase(self, cell: str | None, text: str) -> None:
        if text.startswith(("waiting", "loading")):
            self._line(f"{cell}: {text}" if cell else text)

    def message(self, text: str) -> None:
        self._line(text)

    def cell_skip(self, rec: Record) -> None:
        self._line(f"= {rec['dataset']} · {rec['model']} · seed {rec['seed']}: record exists, skipped")

    def cell_end(self, rec: Record) -> None:
        d = rec.data
        self.started.pop(f"{d['dataset']} · {d['model']} · seed {d['seed']}", None)
        self._line(cell_text(rec))


class RichReporter(Reporter):
    """Draws a bar per running cell (and its epoch's batches); prints a line per finished cell."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.tasks: dict[str, tuple[Any, Any]] = {}  # cell -> (cell task, batch task or None)

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def cell_start(self, cell: str, epochs: int | None) -> None:
        self._drop(cell)
        task = self.progress.add_task(escape(cell), total=epochs or 1, info="fitting")
        batch = self.progress.add_task("  epoch", total=1, info="") if epochs else None
        self.tasks[cell] = (task, batch)

    def batch(self, cell: str, done: int, total: int) -> None:
        batch = self.tasks.get(cell, (None, None))[1]
        if batch is not None:
            self.progress.update(batch, completed=done, total=total)

    def epoch(self, cell: str, info: dict[str, Any]) -> None:
        if cell in self.tasks:
            self.progress.update(self.tasks[cell][0], completed=info["epoch"], info=escape(epoch_text(info)))

    def phase(self, cell: str | None, text: str) -> None:
        if cell in self.tasks:
            self.progress.update(self.tasks[cell][0], info=escape(text))
        else:
            self.console.print(f"[dim]{escape(text)}[/dim]", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    def cell_skip(self, rec: Record) -> None:
        self.console.print(
            f"[dim]= {escape(rec['dataset'])} · {escape(rec['model'])} · seed {rec['seed']}: "
            "record exists, skipped[/dim]"
        )

    def cell_end(self, rec: Record) -> None:
        d = rec.data
        self._drop(f"{d['dataset']} · {d['model']} · seed {d['seed']}")
        colour = "green" if rec.status == "ok" else "red"
        text = escape(cell_text(rec))
        self.console.print(
            f"[{colour}]{text[0]}[/{colour}]{text[1:]}" if rec.status == "ok" else f"[red]{text}[/red]",
            highlight=False,
            soft_wrap=True,
        )

    def _drop(self, cell: str) -> None:
        for t in self.tasks.pop(cell, ()):
            if t is not None:
                self.progress.remove_task(t)

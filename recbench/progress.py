"""Rich progress for long commands: one line per cell with epochs, loss and samples/s."""

from __future__ import annotations

from typing import Any

from rich.console import Console
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


class RichReporter(Reporter):
    """Draws the grid's progress; prints one summary line per finished cell."""

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
        self.cell_task: Any = None
        self.batch_task: Any = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def cell_start(self, dataset: str, model: str, seed: int, epochs: int | None) -> None:
        self._drop()
        self.cell_task = self.progress.add_task(f"{dataset} · {model} · seed {seed}", total=epochs or 1, info="fitting")
        if epochs:
            self.batch_task = self.progress.add_task("  epoch", total=1, info="")

    def batch(self, done: int, total: int) -> None:
        if self.batch_task is not None:
            self.progress.update(self.batch_task, completed=done, total=total)

    def epoch(self, info: dict[str, Any]) -> None:
        text = f"loss {info['loss']:.4f} · {info['samples_per_s']:,.0f} samples/s"
        if "test" in info:
            text += " · " + " ".join(f"{k} {v:.3f}" for k, v in info["test"].items())
        if self.cell_task is not None:
            self.progress.update(self.cell_task, advance=1, info=text)

    def phase(self, text: str) -> None:
        if self.cell_task is not None:
            self.progress.update(self.cell_task, info=text)
        else:
            self.console.log(text)

    def cell_skip(self, rec: Record) -> None:
        self.console.print(f"[dim]= {rec['dataset']} · {rec['model']} · seed {rec['seed']}: record exists, skipped[/dim]")

    def cell_end(self, rec: Record) -> None:
        self._drop()
        d = rec.data
        if rec.status == "ok":
            m = "  ".join(f"{p}: " + " ".join(f"{k} {v:.4f}" for k, v in d["metrics"][p].items()) for p in d["protocols"])
            self.console.print(f"[green]✓[/green] {d['dataset']} · {d['model']} · seed {d['seed']}  {m}  ({d['timing'].get('fit_s', 0):.1f} s fit)")
        else:
            self.console.print(f"[red]✗ {d['dataset']} · {d['model']} · seed {d['seed']} failed: {d['error']}[/red]")

    def _drop(self) -> None:
        for t in (self.cell_task, self.batch_task):
            if t is not None:
                self.progress.remove_task(t)
        self.cell_task = self.batch_task = None

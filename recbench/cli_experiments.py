"""``recbench tune`` and ``recbench experiment``: the commands that run many cells for one purpose
(a validation-only search, one of the paper's experiments); registered on the app by
:mod:`recbench.cli`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from recbench.cli_options import (
    Checkpoint,
    DataDir,
    Datasets,
    Device,
    Jobs,
    Protocol,
    SplitSeed,
    Threads,
    apply_threads,
    csv_list,
    err,
    fail,
    first_line,
    parse_seeds,
)
from recbench.models.base import ConfigError


def tune_cmd(
    dataset: Datasets,
    model: Annotated[str, typer.Option("--models", "--model", "-m", help="Comma-separated model names.")],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="MODEL.PARAM=V1,V2",
            help="Search values: MODEL.PARAM=V1,V2,... (repeatable; replaces the default space's values for PARAM).",
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Trials per (dataset, model); default: the same budget for every model, from search_spaces.toml."
        ),
    ] = None,
    seeds: Annotated[
        str,
        typer.Option(
            help="Comma-separated model seeds per trial (the score is their mean). 0 by default, as for run: each "
            "seed multiplies every trial's cost."
        ),
    ] = "0",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="MODEL.PARAM=VALUE",
            help="Fix a config value in every trial: MODEL.PARAM=VALUE (repeatable).",
        ),
    ] = None,
    search_seed: Annotated[
        int, typer.Option(help="Seed of the random subset of the grid when --trials is smaller than it.")
    ] = 0,
    split_seed: SplitSeed = 0,
    out: Annotated[Path, typer.Option(help="Results folder (trial records and tuned/<dataset>/<model>.json).")] = Path(
        "runs"
    ),
    force: Annotated[bool, typer.Option(metavar="", help="Redo trials whose record exists.")] = False,
    device: Device = "cpu",
    data_dir: DataDir = None,
    threads: Threads = 1,
    jobs: Jobs = 1,
    checkpoint: Checkpoint = True,
    early_stopping: Annotated[
        int,
        typer.Option(
            help="Patience in epochs on the validation metric inside each trial (0: off); the trial scores its best "
            "epoch."
        ),
    ] = 0,
) -> None:
    """Search hyperparameters on the validation split; keep the best config per dataset and model.

    Never looks at the test item. `recbench run --tuned` applies the stored config. Trials are
    ordinary, resumable records (tagged purpose=tune, never shown by `recbench report`)."""
    from recbench.plan import parse_overrides
    from recbench.progress import make_reporter
    from recbench.registry import parse_model_list
    from recbench.runner import check_datasets, check_run_options
    from recbench.tune import TuneOptions, parse_grid, plan, tune

    apply_threads(threads)
    try:
        names = parse_model_list(model)
        datasets = csv_list(dataset)
        if not datasets:
            raise ConfigError("--dataset: give at least one dataset")
        opts = TuneOptions(
            seeds=parse_seeds(seeds), trials=trials, search_seed=search_seed,
            fixed=parse_overrides(set_ or []), grid=parse_grid(grid or []), out=out,
            split_seed=split_seed, device=device, force=force, data_dir=data_dir,
            jobs=jobs, threads=threads, checkpoint=checkpoint, early_stopping=early_stopping,
        )  # fmt: skip
        if jobs < 1 or early_stopping < 0:
            raise ConfigError(f"--jobs {jobs} / --early-stopping {early_stopping}: must be ≥ 1 / ≥ 0")
        for m in [*opts.fixed, *opts.grid]:
            if m not in names:
                raise ConfigError(f"--set/--grid names model {m!r}, which is not in --model ({', '.join(names)})")
        plans = {m: plan(m, opts) for m in names}  # every value checked before any work
        check_run_options(out, device)
        check_datasets(datasets, data_dir)
        for m, (cands, size, _space) in plans.items():
            err.print(f"{m}: {len(cands)} trial(s) of a {size}-point grid", highlight=False)
        docs = []

        def trial_line(t: dict[str, Any]) -> None:
            params = " ".join(f"{k}={v}" for k, v in t["params"].items()) or "(defaults)"
            err.print(f"trial {params}: validation {t['score']:.4f} ({t['status']})", highlight=False, soft_wrap=True)

        with make_reporter(err) as reporter:
            for ds in datasets:
                for m in names:
                    docs.append(tune(ds, m, opts, reporter, on_trial=trial_line))
    except (ConfigError, ValueError) as e:
        raise fail(first_line(e)) from None
    for doc in docs:
        _print_trials(doc)


def _print_trials(doc: dict[str, Any]) -> None:
    """A tuned (dataset, model): every trial's validation score, the best in bold, and where it went."""
    from rich.table import Table

    console = Console()
    metric = doc["metric"].split()[-1].upper()
    table = Table(title=f"{doc['dataset']} / {doc['model']}: validation {metric} per trial")
    params = list(doc["search_space"])
    for c in [*params, "validation", "status"]:
        table.add_column(c, justify="right")
    for t in sorted(doc["trials"], key=lambda t: -t["score"] if t["score"] == t["score"] else 1e9):
        best = t["params"] == doc["best"]["params"]
        row = [str(t["params"].get(p, "")) for p in params] + [f"{t['score']:.4f}", t["status"]]
        table.add_row(*row, style="bold green" if best else None)
    console.print(table)
    best = doc["best"]
    console.print(
        f"best: {best['overrides'] or '(defaults)'} (validation {best['score']:.4f}) -> {doc['path']}",
        highlight=False, markup=False,
    )  # fmt: skip


def experiment_cmd(
    name: Annotated[
        str,
        typer.Argument(
            help="neg-ratio, interaction, aggregation, embedding-size, table2, interaction-res or aggregation-res."
        ),
    ],
    dataset: Datasets,
    seeds: Annotated[
        str,
        typer.Option(
            help="Comma-separated model seeds. 0,1,2 by default (unlike run's 0): an experiment makes a published "
            "table, whose mean ± std needs 3 or more."
        ),
    ] = "0,1,2",
    epochs: Annotated[
        int | None,
        typer.Option(help="Epochs for every model (default: each model's; a change is stated in the caption)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="MODEL.PARAM=VALUE",
            help="Override a config value: MODEL.PARAM=VALUE (repeatable; stated in the caption).",
        ),
    ] = None,
    values: Annotated[
        str | None, typer.Option(help="Run only these grid values (neg-ratio, embedding-size), e.g. 2,6,10.")
    ] = None,
    protocol: Annotated[Protocol, typer.Option(help="sampled (the paper's) or both.")] = Protocol.sampled,
    out: Annotated[
        Path,
        typer.Option(
            help="Results folder: records under OUT/records, outputs under OUT/experiments/NAME (default ./runs)."
        ),
    ] = Path("runs"),
    force: Annotated[bool, typer.Option(metavar="", help="Redo cells whose record exists.")] = False,
    device: Device = "cpu",
    split_seed: SplitSeed = 0,
    data_dir: DataDir = None,
    threads: Threads = 1,
    jobs: Jobs = 1,
    checkpoint: Checkpoint = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="List the cells (dataset, model, settings) and exit.")
    ] = False,
    no_fit: Annotated[
        bool,
        typer.Option(
            "--no-fit",
            metavar="",
            help="Fit nothing: build the table and figure from the records already there and list the missing cells "
            "in the caption.",
        ),
    ] = False,
) -> None:
    """Run one of the paper's experiments; write its table, figure and README.

    Resumable (cells are result records). Writes table.md/.csv, figure.png/.svg, report.html and
    README.md (with the exact command) under OUT/experiments/NAME."""
    import shlex

    from recbench.experiments import ExperimentOptions, plan, run_experiment
    from recbench.plan import parse_overrides
    from recbench.progress import make_reporter
    from recbench.runner import check_datasets, check_run_options

    apply_threads(threads)
    try:
        datasets = csv_list(dataset)
        sets = set_ or []
        cmd = ["recbench", "experiment", name, "--dataset", ",".join(datasets), "--seeds", seeds]
        cmd += ["--epochs", str(epochs)] if epochs is not None else []
        for s in sets:
            cmd += ["--set", s]
        cmd += ["--values", values] if values else []
        cmd += ["--protocol", protocol.value] if protocol != Protocol.sampled else []
        cmd += ["--split-seed", str(split_seed)] if split_seed else []
        cmd += ["--out", str(out)]
        cmd += ["--no-fit"] if no_fit else []
        opts = ExperimentOptions(
            seeds=parse_seeds(seeds), epochs=epochs, overrides=parse_overrides(sets),
            values=tuple(csv_list(values)) if values else None, protocols=protocol.protocols(),
            out=out, device=device, split_seed=split_seed, data_dir=data_dir, force=force, no_fit=no_fit,
            command=shlex.join(cmd), jobs=jobs, threads=threads, checkpoint=checkpoint,
        )  # fmt: skip
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs}: must be ≥ 1")
        _preset, cells, notes = plan(name, datasets, opts)  # every check before any work
        if dry_run:
            for c in cells:
                sys.stdout.write(f"{c.dataset}\t{c.model}\t{c.overrides}\tseeds {','.join(map(str, opts.seeds))}\n")
            n_seeds = len(opts.seeds)
            sys.stdout.write(f"{len(cells)} cell(s) x {n_seeds} seed(s) = {len(cells) * n_seeds} fits\n")
            for n in notes:
                sys.stdout.write(f"note: {n}\n")
            return
        check_run_options(out, device)
        check_datasets(datasets, data_dir)
        with make_reporter(err) as reporter:
            res = run_experiment(name, datasets, opts, reporter)
    except (ConfigError, ValueError) as e:
        raise fail(first_line(e)) from None
    sys.stdout.write((res.folder / "table.md").read_text())
    err.print(f"wrote {', '.join(str(f) for f in res.files)}", highlight=False, soft_wrap=True)
    if res.failed:
        err.print(f"[red]{len(res.failed)} cell(s) failed; see {res.folder / 'table.md'}[/red]")
        raise typer.Exit(1)

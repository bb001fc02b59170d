"""The ``recbench`` command line: thin Typer commands that parse, call a library function and
write. Every command's logic lives in the library so it can be tested without the CLI; options
shared by several commands are declared once in :mod:`recbench.cli_options`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from recbench import cli_data, cli_experiments
from recbench.bench.cli import bench_app
from recbench.cli_options import (
    Checkpoint,
    DataDir,
    Device,
    Executor,
    Jobs,
    Models,
    PairedTest,
    Protocol,
    ReportFormat,
    Sets,
    SplitSeed,
    Test,
    Threads,
    Validation,
    apply_threads,
    csv_list,
    err,
    fail,
    first_line,
    parse_seeds,
    warn,
    warnings_as_lines,
)
from recbench.models.base import ConfigError

if TYPE_CHECKING:  # the runner imports torch lazily; the CLI starts without it
    from recbench.report import Report
    from recbench.runner import Cell, RunOptions, SplitLoader

app = typer.Typer(
    name="recbench",
    context_settings={"max_content_width": 200},  # help as wide as the terminal, not 80 columns
    help="Benchmark top-N recommenders (OPECI and its baselines) under leave-one-out evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["app", "fail", "main"]


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        from recbench.provenance import code_version

        code = code_version()
        dirty = ", modified" if code.get("dirty") else ""
        commit = f" (commit {code['commit'][:12]}{dirty})" if "commit" in code else ""
        Console().print(f"recbench {metadata.version('recbench')}{commit}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit."),
    ] = False,
) -> None:
    """Benchmark top-N recommenders (OPECI and its baselines) under leave-one-out evaluation."""


def _build_report(results: Path | None, metrics: list[str], paper: bool, **kwargs: Any) -> Report:
    """``build_report``, printing each skipped (truncated, invalid) record as one warning line."""
    import warnings

    from recbench.report import build_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = build_report(results, metrics, paper, **kwargs)
    for w in caught:
        warn(str(w.message))
    return rep


def _prepare_floats() -> None:
    from recbench.numerics import prepare_portable_env

    try:
        prepare_portable_env()  # before torch loads (its kernels are chosen once): an eager option's callback
    except ConfigError as e:
        raise fail(first_line(e)) from None


def _portable_floats(value: bool) -> bool:
    if value:
        _prepare_floats()
    return value


def _floats_of(value: Path | None) -> Path | None:
    from recbench.numerics import record_floats

    if value is not None and record_floats(value) == "portable":
        _prepare_floats()
    return value


SEEDS_RUN_HELP = (
    "Comma-separated model seeds. 0 by default: one fit per cell, a quick look at every model (run's default "
    "grid is every model on every fetched data set); published tables use 3 or more, as `experiment` does (0,1,2)."
)


@app.command()
def run(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Comma-separated datasets; default: every fetched one, else 'synthetic'."),
    ] = None,
    models: Models = None,
    seeds: Annotated[str, typer.Option(help=SEEDS_RUN_HELP)] = "0",
    protocol: Annotated[Protocol, typer.Option(help="Evaluation protocol.")] = Protocol.sampled,
    set_: Sets = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Results folder (default ./runs, a working folder; `--out results` publishes into the repository's "
            "results)."
        ),
    ] = Path("runs"),
    force: Annotated[bool, typer.Option(metavar="", help="Redo cells whose record exists.")] = False,
    device: Device = "cpu",
    validation: Validation = False,
    eval_every: Annotated[int, typer.Option(help="Evaluate (sampled, test) every N epochs and keep the curve.")] = 0,
    early_stopping: Annotated[int, typer.Option(help="Patience in epochs on validation NDCG@10 (0: off).")] = 0,
    split_seed: SplitSeed = 0,
    split_seeds: Annotated[
        str | None,
        typer.Option(
            help="Several splits: comma-separated split seeds; every cell runs on each (the report shows each split, "
            "or pools them with --pool-split-seeds)."
        ),
    ] = None,
    from_record: Annotated[
        Path | None,
        typer.Option(
            help="Rerun exactly the cell a record describes (in its float mode).", is_eager=True, callback=_floats_of
        ),
    ] = None,
    tuned: Annotated[
        bool,
        typer.Option(
            "--tuned",
            metavar="",
            help="Apply the best configs stored by `recbench tune` under OUT/tuned/ (per dataset and model; "
            "--set wins).",
        ),
    ] = False,
    data_dir: DataDir = None,
    threads: Threads = 1,
    jobs: Jobs = 1,
    executor: Annotated[
        Executor, typer.Option(help="local (this machine) or ray (a Ray cluster; pip install 'recbench[ray]').")
    ] = Executor.local,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join ('auto': the running one; default: start a local instance)."),
    ] = None,
    checkpoint: Checkpoint = True,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N epochs.")] = 1,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(help="Checkpoint folder (default OUT/.checkpoints; on a cluster, a path every node can reach)."),
    ] = None,
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            metavar="",
            help="Keep each fit's last checkpoint once its record lands (its weights, for `recbench diagnose "
            "--checkpoint`); by default it is removed.",
        ),
    ] = False,
    portable_floats: Annotated[
        bool,
        typer.Option(
            "--portable-floats",
            metavar="",
            help="Float kernels that give the same bits on every x86-64 CPU with AVX2 (oneMKL's COMPATIBLE branch, "
            "torch's AVX2 kernels, no oneDNN), so that another machine reruns a record exactly; slower, and part "
            "of the record's key. --from-record reruns a record in its own mode.",
            is_eager=True,
            callback=_portable_floats,
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            metavar="",
            help="List the cells with an estimated time from earlier records made on this CPU (in OUT and in "
            "./results), fit nothing (the data sets must be fetched: a cell's record key needs its split).",
        ),
    ] = False,
) -> None:
    """Fit and evaluate every (dataset, model, seed) cell; one result record each, resumable."""
    from recbench.numerics import record_floats

    if from_record is not None and portable_floats and record_floats(from_record) != "portable":
        raise fail(f"{from_record} was made with native floats: --from-record reruns it so; drop --portable-floats")
    floats = "portable" if portable_floats else "native"  # --from-record: the record's own (prepare_rerun)
    from recbench.plan import execute, parse_overrides, plan_run
    from recbench.progress import make_reporter
    from recbench.registry import parse_model_list
    from recbench.rerun import prepare_rerun
    from recbench.runner import RunOptions, check_datasets, check_run_options

    apply_threads(threads)
    rerun = None
    try:
        exec_opts = dict(
            out=out, device=device, data_dir=data_dir, jobs=jobs, threads=threads, executor=executor.value,
            ray_address=ray_address, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            checkpoint_dir=checkpoint_dir, keep_checkpoints=keep_checkpoints, floats=floats,
        )  # fmt: skip
        split_loader = None
        if from_record is not None:
            rerun = prepare_rerun(from_record, **{k: v for k, v in exec_opts.items() if k != "device"})
            if rerun.changed_versions:
                changes = ", ".join(f"{k} {a} → {b}" for k, (a, b) in rerun.changed_versions.items())
                err.print(
                    f"[yellow]library versions differ from the record's; results may differ:[/yellow] {changes}",
                    highlight=False, soft_wrap=True,
                )  # fmt: skip
            opts, cells = rerun.opts, [rerun.cell]
            split_loader = lambda _name: rerun.split  # noqa: E731 - the split just checked
        else:
            names = parse_model_list(models)
            datasets = csv_list(dataset) or _default_datasets(data_dir)
            opts = RunOptions(
                seeds=parse_seeds(seeds),
                protocols=protocol.protocols(),
                overrides=parse_overrides(set_ or []),
                force=force,
                validation=validation,
                split_seed=split_seed,
                split_seeds=parse_seeds(split_seeds, "--split-seeds") if split_seeds is not None else (),
                eval_every=eval_every,
                early_stopping=early_stopping,
                tuned=out if tuned else None,
                **exec_opts,
            )
            # every configuration check before the first fetch or write: a bad value writes nothing
            check_run_options(out, opts.device)
            cells = plan_run(datasets, names, opts)  # every config resolved and range-checked
            check_datasets(datasets, data_dir)
            if dry_run:
                _dry_run(cells, opts, split_loader)
                return
        with make_reporter(err) as reporter, warnings_as_lines():
            records = execute(cells, opts, reporter, split_loader)
    except (ConfigError, ValueError) as e:
        raise fail(first_line(e)) from None
    from recbench.report import build_report, render

    rep = build_report(None, ["hr@10", "ndcg@10"], paper=True, records=records)  # the cells of this run
    sys.stdout.write(render(rep, "markdown"))
    err.print(f"records in {out}/records; `recbench report --results {out}` reports the whole folder", highlight=False)
    if rerun is not None:
        new, old = records[0].data["metrics"], rerun.record.data["metrics"]
        if new == old:
            err.print("[green]identical metrics to the record[/green]")
        else:
            err.print(f"[yellow]metrics differ from the record: {old} vs {new}[/yellow]")
    n_failed = sum(r.status != "ok" for r in records)
    if n_failed:
        err.print(f"[red]{n_failed} cell(s) failed; see the report[/red]")
        raise typer.Exit(1)


def _dry_run(cells: list[Cell], opts: RunOptions, split_loader: SplitLoader | None) -> None:
    """The cells, whether a record exists (the run's own test: the cell's record key, from its
    split's fingerprint, and every protocol wanted; none with --force, which refits), and the time
    each would take on this machine."""
    from rich.table import Table

    from recbench.plan import estimate_seconds
    from recbench.provenance import hardware
    from recbench.results import iter_records
    from recbench.runner import Reporter, existing_record, load_splits

    folders = dict.fromkeys([opts.out, Path("results")])
    past = [r for folder in folders for r in iter_records(folder, with_ranks=False, warn=False)]
    splits = load_splits(cells, opts, Reporter(), split_loader)
    cpu = hardware()["cpu"]
    table = Table(title=f"recbench run --dry-run: {len(cells)} cell(s) on {cpu}")
    for col in ("dataset", "split", "model", "seed", "status", "estimate"):
        table.add_column(col, justify="right" if col in ("seed", "estimate") else "left")
    total, unknown = 0.0, 0
    for c in cells:
        if not opts.force and existing_record(splits[c.split], c, opts) is not None:
            table.add_row(c.dataset, str(c.split.seed), c.model, str(c.seed), "record exists", "—")
            continue
        est = estimate_seconds(c, past, cpu)
        total += est[0] if est else 0.0
        unknown += est is None
        shown = "unknown" if est is None else f"{est[0]:,.0f} s" + ("" if est[1] == cpu else f" ({est[1]})")
        table.add_row(c.dataset, str(c.split.seed), c.model, str(c.seed), "to run", shown)
    Console().print(table)
    jobs = max(opts.jobs, 1)
    Console().print(
        f"estimated {total / 3600:.2f} h of fitting ({total / jobs / 3600:.2f} h wall with --jobs {jobs})"
        + (f"; {unknown} cell(s) without an earlier record: unknown" if unknown else "")
        + "; a CPU named beside an estimate is the other machine it was measured on",
        highlight=False,
    )


def _default_datasets(data_dir: Path | None) -> list[str]:
    from recbench.data import fetched_datasets

    found = [d for d in fetched_datasets(data_dir) if d != "synthetic"]
    if found:
        err.print(f"datasets: {', '.join(found)} (every fetched one)")
        return found
    err.print("datasets: synthetic (nothing fetched yet; `recbench fetch ml-100k` for real data)")
    return ["synthetic"]


@app.command()
def report(
    results: Annotated[
        Path,
        typer.Option(
            help="Results folder (default ./runs, where `recbench run` writes; `--results results` for the published "
            "ones)."
        ),
    ] = Path("runs"),
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.markdown,
    metric: Annotated[
        str,
        typer.Option(
            help="Comma-separated metrics: hr, ndcg, mrr, recall (= hr with one held-out item), precision; @K for the "
            "cut-off (default 10), e.g. hr@5,ndcg@20."
        ),
    ] = "hr,ndcg",
    paper: Annotated[
        bool, typer.Option("--paper/--no-paper", metavar="", help="Show the paper's numbers beside ours.")
    ] = True,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="Model every other is tested against (default: opeci when present); repeat it to give "
            "fallbacks: each data set (and split) is tested against the first it has.",
        ),
    ] = None,
    test: Test = PairedTest.wilcoxon,
    alpha: Annotated[float, typer.Option(help="Significance level after Holm's correction.")] = 0.05,
    experiment: Annotated[
        str | None, typer.Option(help="Report one experiment's records (see `recbench experiment`).")
    ] = None,
    pool_split_seeds: Annotated[
        bool,
        typer.Option(
            "--pool-split-seeds",
            metavar="",
            help="Pool the records of several split seeds into one cell per model (spread decomposed into between- "
            "and within-split).",
        ),
    ] = False,
) -> None:
    """A Table-2-style table with statistics, from the result records.

    Mean ± std and 95 % CI over seeds, paired tests against a reference model with Holm's
    correction, sampled vs full ranking with Kendall τ."""
    from recbench.eval.metrics import parse_metric
    from recbench.report import render

    metrics = [m if "@" in m else f"{m}@10" for m in csv_list(metric)]
    for m in metrics:
        if m.split("@")[1].lstrip("-").isdigit() and int(m.split("@")[1]) < 1:
            raise fail(f"--metric {m}: K must be ≥ 1")
        try:
            parse_metric(m)
        except ValueError as e:
            raise fail(str(e)) from None
    if not (results / "records").exists() or not any((results / "records").rglob("*.json")):
        raise fail(f"no result records under {results}/records; run `recbench run` first")
    if not 0 < alpha < 1:
        raise fail(f"--alpha {alpha}: expected a level between 0 and 1, e.g. 0.05")
    try:
        rep = _build_report(
            results, metrics, paper, reference=reference, test=test.value, alpha=alpha, experiment=experiment,
            pool_split_seeds=pool_split_seeds,
        )  # fmt: skip
    except ValueError as e:
        raise fail(str(e)) from None
    if "sampled" in rep.protocols and rep.n_negatives:
        n_cand = min(rep.n_negatives) + 1
        too_big = [m for m in metrics if int(m.split("@")[1]) >= n_cand]
        if too_big:
            raise fail(
                f"--metric {too_big[0]}: with {n_cand} candidates per user (sampled protocol) every model "
                f"would score 1 at K ≥ {n_cand}; use K < {n_cand}"
            )
    if experiment is not None and rep.summary.empty and not rep.failed:
        raise fail(
            f"no result records of experiment {experiment!r} under {results}; "
            f"run `recbench experiment {experiment}` first"
        )
    for w in rep.warnings:
        warn(w)
    text = render(rep, format.value, paper)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    else:
        sys.stdout.write(text)


app.command("fetch")(cli_data.fetch_cmd)
app.command("datasets")(cli_data.datasets_cmd)
app.add_typer(bench_app, name="bench")


app.command("tune")(cli_experiments.tune_cmd)
app.command("experiment")(cli_experiments.experiment_cmd)
app.command("models")(cli_data.models_cmd)
app.command("diagnose")(cli_data.diagnose_cmd)


def main() -> None:  # pragma: no cover - entry point
    """The ``recbench`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``recbench`` command line: thin Typer commands that parse, call a library function and
write. Every command's logic lives in the library so it can be tested without the CLI."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from recbench.models.base import ConfigError

if TYPE_CHECKING:  # the runner imports torch lazily; the CLI starts without it
    from recbench.runner import Cell, RunOptions

app = typer.Typer(
    name="recbench",
    context_settings={"max_content_width": 200},  # help as wide as the terminal, not 80 columns
    help="Benchmark top-N recommenders (OPECI and its baselines) under leave-one-out evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        from recbench.runner import code_version

        code = code_version()
        commit = f" (commit {code['commit'][:12]}{', modified' if code.get('dirty') else ''})" if "commit" in code else ""
        Console().print(f"recbench {metadata.version('recbench')}{commit}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit.")] = False,
) -> None:
    """Benchmark top-N recommenders (OPECI and its baselines) under leave-one-out evaluation."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class _warnings_as_lines:
    """Python warnings (a record that will be redone, ...) as one ``warning:`` line each, never
    with a source line."""

    def __enter__(self) -> None:
        import warnings

        self._old = warnings.showwarning
        warnings.showwarning = lambda message, *_a, **_k: err.print(f"[yellow]warning:[/yellow] {escape_markup(str(message))}", highlight=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        import warnings

        warnings.showwarning = self._old


def _build_report(results: Path, metrics: list[str], paper: bool, **kwargs):
    """``build_report``, printing each skipped (truncated, invalid) record as one warning line."""
    import warnings

    from rich.text import Text

    from recbench.report import build_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = build_report(results, metrics, paper, **kwargs)
    for w in caught:
        err.print(Text.assemble(("warning:", "yellow"), f" {w.message}"), highlight=False, soft_wrap=True)
    return rep


def _parse_seeds(value: str, option: str = "--seeds") -> tuple[int, ...]:
    parts = [v.strip() for v in value.split(",")]
    if any(not p for p in parts) and any(parts):
        raise ConfigError(f"{option} {value!r}: an empty entry; expected comma-separated integers, e.g. 0,1,2")
    try:
        seeds = tuple(int(s) for s in _csv(value))
    except ValueError:
        raise ConfigError(f"{option} {value!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ConfigError(f"{option} {value!r}: no seed given; e.g. {option} 0,1,2")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"{option} {value!r}: seeds must be ≥ 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{option} {value!r}: a seed given twice")
    return seeds


def _check_run_options(out: Path, device: str) -> None:
    """Fail before any work (and before anything is written) on an unusable --out or --device."""
    import re

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if device != "auto" and device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ConfigError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N, auto")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is available here; valid: cpu, auto")


def _set_threads(threads: int) -> None:
    """torch's intra-op thread count (recorded in every result's ``hardware``)."""
    if threads < 0:
        raise fail(f"--threads {threads}: give 0 (torch's default) or a positive count")
    from recbench.runner import set_threads

    set_threads(threads)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class Protocol(StrEnum):
    sampled = "sampled"
    full = "full"
    both = "both"


class ReportFormat(StrEnum):
    markdown = "markdown"
    csv = "csv"
    latex = "latex"
    json = "json"
    html = "html"


class Executor(StrEnum):
    local = "local"
    ray = "ray"


JOBS_HELP = "Cells at a time, each in its own worker process with --threads torch threads (records and numbers as with 1)."


@app.command()
def run(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Comma-separated datasets; default: every fetched one, else 'synthetic'.")] = None,
    models: Annotated[str | None, typer.Option("--models", "-m", help="Comma-separated model names; default: all.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated model seeds.")] = "0",
    protocol: Annotated[Protocol, typer.Option(help="Evaluation protocol.")] = Protocol.sampled,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="MODEL.PARAM=VALUE", help="Override a config value: MODEL.PARAM=VALUE (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Results folder (default ./runs, a working folder; `--out results` publishes into the repository's results).")] = Path("runs"),
    force: Annotated[bool, typer.Option(metavar="", help="Redo cells whose record exists.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    validation: Annotated[bool, typer.Option(metavar="", help="Hold out a validation item per user too (needed for early stopping).")] = False,
    eval_every: Annotated[int, typer.Option(help="Evaluate (sampled, test) every N epochs and keep the curve.")] = 0,
    early_stopping: Annotated[int, typer.Option(help="Patience in epochs on validation NDCG@10 (0: off).")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the split's candidate sampling.")] = 0,
    split_seeds: Annotated[str | None, typer.Option(help="Several splits: comma-separated split seeds; every cell runs on each (the report shows each split, or pools them with --pool-split-seeds).")] = None,
    from_record: Annotated[Path | None, typer.Option(help="Rerun exactly the cell a record describes.")] = None,
    tuned: Annotated[bool, typer.Option("--tuned", metavar="", help="Apply the best configs stored by `recbench tune` under OUT/tuned/ (per dataset and model; --set wins).")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads on CPU (0: torch's default, one per core). 1 by default: with small batches, more threads wait on each other on a busy machine (results/bench/README.md).")] = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help=JOBS_HELP)] = 1,
    executor: Annotated[Executor, typer.Option(help="local (this machine) or ray (a Ray cluster; pip install 'recbench[ray]').")] = Executor.local,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join ('auto': the running one; default: start a local instance).")] = None,
    checkpoint: Annotated[bool, typer.Option("--checkpoint/--no-checkpoint", metavar="", help="Checkpoint torch fits after each epoch; a rerun resumes from the last one.")] = True,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N epochs.")] = 1,
    checkpoint_dir: Annotated[Path | None, typer.Option(help="Checkpoint folder (default OUT/.checkpoints; on a cluster, a path every node can reach).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="List the cells with an estimated time from earlier records made on this CPU (in OUT and in ./results), fit nothing.")] = False,
) -> None:
    """Fit and evaluate every (dataset, model, seed) cell; one result record each, resumable."""
    from dataclasses import replace

    from recbench.plan import cell_from_record, execute, parse_overrides, plan_run
    from recbench.progress import make_reporter
    from recbench.registry import parse_model_list
    from recbench.results import read_record
    from recbench.runner import RunOptions, default_split_loader, versions

    _set_threads(threads)
    try:
        exec_opts = dict(
            out=out, device=device, data_dir=data_dir, jobs=jobs, threads=threads, executor=executor.value,
            ray_address=ray_address, checkpoint=checkpoint, checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir,
        )
        split_loader = None
        if from_record is not None:
            old = read_record(from_record)
            cell = cell_from_record(old.data)
            opts = RunOptions(**{**exec_opts, "device": old.data.get("device", "cpu")}, force=True)
            _check_run_options(out, opts.device)
            _check_datasets([cell.dataset], data_dir)
            split = default_split_loader(replace(opts, split_seed=cell.split.seed, validation=cell.split.validation,
                                                 n_negatives=cell.split.n_negatives))(cell.dataset)
            if split.fingerprint != old.data.get("split"):
                raise ConfigError(
                    f"{from_record}: the split of {cell.dataset!r} is now {split.fingerprint[:16]}, the record's is "
                    f"{str(old.data.get('split'))[:16]} (the data or the split code changed): cannot rerun it exactly"
                )
            now = versions()
            changed = {k: (v, now.get(k)) for k, v in (old.data.get("versions") or {}).items() if now.get(k) != v}
            if changed:
                err.print("[yellow]library versions differ from the record's; results may differ:[/yellow] " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in changed.items()), highlight=False, soft_wrap=True)
            split_loader = lambda _name: split  # noqa: E731 - the split just checked
            cells = [cell]
        else:
            names = parse_model_list(models)
            datasets = _csv(dataset) or _default_datasets(data_dir)
            protos = ("sampled", "full") if protocol == Protocol.both else (protocol.value,)
            opts = RunOptions(
                seeds=_parse_seeds(seeds),
                protocols=protos,
                overrides=parse_overrides(set_ or []),
                force=force,
                validation=validation,
                split_seed=split_seed,
                split_seeds=_parse_seeds(split_seeds, "--split-seeds") if split_seeds is not None else (),
                eval_every=eval_every,
                early_stopping=early_stopping,
                tuned=out if tuned else None,
                **exec_opts,
            )
            # every configuration check before the first fetch or write: a bad value writes nothing
            _check_run_options(out, opts.device)
            cells = plan_run(datasets, names, opts)  # every config resolved and range-checked
            if dry_run:
                _dry_run(cells, opts)
                return
            _check_datasets(datasets, data_dir)
        with make_reporter(err) as reporter, _warnings_as_lines():
            records = execute(cells, opts, reporter, split_loader)
    except (ConfigError, ValueError) as e:
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    from recbench.report import build_report, render

    rep = build_report(None, ["hr@10", "ndcg@10"], paper=True, records=records)  # the cells of this run
    sys.stdout.write(render(rep, "markdown"))
    err.print(f"records in {out}/records; `recbench report --results {out}` reports the whole folder", highlight=False)
    if from_record is not None:
        new, old_m = records[0].data["metrics"], old.data["metrics"]
        same = new == old_m
        err.print("[green]identical metrics to the record[/green]" if same else f"[yellow]metrics differ from the record: {old_m} vs {new}[/yellow]")
    n_failed = sum(r.status != "ok" for r in records)
    if n_failed:
        err.print(f"[red]{n_failed} cell(s) failed; see the report[/red]")
        raise typer.Exit(1)


def _dry_run(cells: list[Cell], opts: RunOptions) -> None:
    """The cells, whether a record exists, and the time each would take on this machine."""
    from rich.table import Table

    from recbench.plan import estimate_seconds
    from recbench.results import iter_records
    from recbench.runner import hardware

    past = [r for folder in dict.fromkeys([opts.out, Path("results")]) for r in iter_records(folder, with_ranks=False, warn=False)]
    import json

    from recbench.models.base import config_to_dict

    def same_json(obj: object) -> str:  # a config as a record stores it (tuples become lists)
        return json.dumps(obj, sort_keys=True, default=str)

    done = {(r["dataset"], r["model"], r["seed"], r.data.get("split_info", {}).get("seed", 0), same_json(r["config"]))
            for r in iter_records(opts.out, with_ranks=False, warn=False) if r.status == "ok"}
    cpu = hardware()["cpu"]
    table = Table(title=f"recbench run --dry-run: {len(cells)} cell(s) on {cpu}")
    for col in ("dataset", "split", "model", "seed", "status", "estimate"):
        table.add_column(col, justify="right" if col in ("seed", "estimate") else "left")
    total, unknown = 0.0, 0
    for c in cells:
        key = (c.dataset, c.model, c.seed, c.split.seed, same_json(config_to_dict(c.config)))
        est = None if key in done else estimate_seconds(c, past, cpu)
        status = "record exists" if key in done else "to run"
        if key not in done:
            total += est[0] if est else 0.0
            unknown += est is None
        table.add_row(c.dataset, str(c.split.seed), c.model, str(c.seed), status,
                      "—" if key in done else ("unknown" if est is None else f"{est[0]:,.0f} s" + ("" if est[1] == cpu else f" ({est[1]})")))
    Console().print(table)
    jobs = max(opts.jobs, 1)
    Console().print(f"estimated {total / 3600:.2f} h of fitting ({total / jobs / 3600:.2f} h wall with --jobs {jobs})"
                    + (f"; {unknown} cell(s) without an earlier record: unknown" if unknown else "")
                    + "; a CPU named beside an estimate is the other machine it was measured on", highlight=False)


def _default_datasets(data_dir: Path | None) -> list[str]:
    from recbench.data import fetched_datasets

    found = [d for d in fetched_datasets(data_dir) if d != "synthetic"]
    if found:
        err.print(f"datasets: {', '.join(found)} (every fetched one)")
        return found
    err.print("datasets: synthetic (nothing fetched yet; `recbench fetch ml-100k` for real data)")
    return ["synthetic"]


def _check_datasets(names: list[str], data_dir: Path | None) -> None:
    """Unknown names fail before any work; known but unfetched ones are fetched."""
    from recbench.data import fetch, is_fetched, load_registry

    reg = load_registry()
    for n in names:
        if n not in reg:
            raise ConfigError(f"unknown dataset {n!r}; valid: {', '.join(reg)}")
    for n in names:
        if not is_fetched(n, data_dir):
            fetch(n, data_dir=data_dir)


@app.command()
def report(
    results: Annotated[Path, typer.Option(help="Results folder (default ./runs, where `recbench run` writes; `--results results` for the published ones).")] = Path("runs"),
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.markdown,
    metric: Annotated[str, typer.Option(help="Comma-separated metrics: hr, ndcg, mrr, recall (= hr with one held-out item), precision; @K for the cut-off (default 10), e.g. hr@5,ndcg@20.")] = "hr,ndcg",
    paper: Annotated[bool, typer.Option("--paper/--no-paper", metavar="", help="Show the paper's numbers beside ours.")] = True,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")] = None,
    reference: Annotated[str | None, typer.Option(help="Model every other is tested against (default: opeci when present).")] = None,
    test: Annotated[str, typer.Option(help="Paired test over users: wilcoxon or bootstrap.")] = "wilcoxon",
    alpha: Annotated[float, typer.Option(help="Significance level after Holm's correction.")] = 0.05,
    experiment: Annotated[str | None, typer.Option(help="Report one experiment's records (see `recbench experiment`).")] = None,
    pool_split_seeds: Annotated[bool, typer.Option("--pool-split-seeds", metavar="", help="Pool the records of several split seeds into one cell per model (spread decomposed into between- and within-split).")] = False,
) -> None:
    """A Table-2-style table with statistics, from the result records.

    Mean ± std and 95 % CI over seeds, paired tests against a reference model with Holm's
    correction, sampled vs full ranking with Kendall τ."""
    from recbench.eval.metrics import parse_metric
    from recbench.report import render

    metrics = [m if "@" in m else f"{m}@10" for m in _csv(metric)]
    for m in metrics:
        if m.split("@")[1].lstrip("-").isdigit() and int(m.split("@")[1]) < 1:
            raise fail(f"--metric {m}: K must be ≥ 1")
        try:
            parse_metric(m)
        except ValueError as e:
            raise fail(str(e)) from None
    if not (results / "records").exists() or not any((results / "records").rglob("*.json")):
        raise fail(f"no result records under {results}/records; run `recbench run` first")
    if test not in ("wilcoxon", "bootstrap"):
        raise fail(f"unknown test {test!r}; valid: wilcoxon, bootstrap")
    if not 0 < alpha < 1:
        raise fail(f"--alpha {alpha}: expected a level between 0 and 1, e.g. 0.05")
    try:
        rep = _build_report(results, metrics, paper, reference=reference, test=test, alpha=alpha, experiment=experiment,
                            pool_split_seeds=pool_split_seeds)
    except ValueError as e:
        raise fail(str(e)) from None
    if "sampled" in rep.protocols and rep.n_negatives:
        n_cand = min(rep.n_negatives) + 1
        too_big = [m for m in metrics if int(m.split("@")[1]) >= n_cand]
        if too_big:
            raise fail(f"--metric {too_big[0]}: with {n_cand} candidates per user (sampled protocol) every model "
                       f"would score 1 at K ≥ {n_cand}; use K < {n_cand}")
    if experiment is not None and rep.summary.empty and not rep.failed:
        raise fail(f"no result records of experiment {experiment!r} under {results}; run `recbench experiment {experiment}` first")
    for w in rep.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape_markup(w)}", highlight=False, soft_wrap=True)
    text = render(rep, format.value, paper)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    else:
        sys.stdout.write(text)


@app.command("fetch")
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name from datasets.toml (see `recbench datasets`).")],
    from_: Annotated[str | None, typer.Option("--from", help="Local archive, data file or folder of the archive's contents, or a mirror URL.")] = None,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Rebuild (and re-download) even if the cache is valid.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", metavar="", help="Accept statistics that differ from the registry's (a deliberately filtered copy; recorded in the cache and in every record).")] = False,
) -> None:
    """Download (or read --from), verify, parse and cache a dataset; print its statistics."""
    import warnings

    from rich.markup import escape

    from recbench.data import DatasetError, UnknownDataset, dataset_info, fetch, load_registry

    try:
        reg = load_registry()
    except DatasetError as e:
        raise fail(str(e)) from None
    if name not in reg:
        raise fail(f"unknown dataset {name!r}; valid names: {', '.join(reg)}", code=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = fetch(name, source=from_, force=force, data_dir=data_dir, progress=True, allow_mismatch=allow_mismatch)
        except UnknownDataset as e:
            raise fail(str(e), code=2) from None
        except DatasetError as e:
            raise fail(str(e), code=1) from None
    for w in caught:
        err.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", highlight=False, soft_wrap=True)
    info = dataset_info(name, data_dir) or {}
    dups = info.get("duplicates_dropped", 0)
    verified = (info.get("source") or {}).get("verified", "generated locally")
    Console().print(
        f"{name}: {data.n_users:,} users, {data.n_items:,} items, {len(data):,} ratings, "
        f"density {100 * data.density:.2f}%, {dups:,} duplicates dropped ({verified})",
        highlight=False, markup=False, soft_wrap=True,
    )


@app.command("datasets")
def datasets_cmd(
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
) -> None:
    """List the registry with each dataset's status and, when fetched, its Table-1 statistics."""
    from rich.table import Table

    from recbench.data import DatasetError, dataset_info, load_dataset, load_registry

    try:
        reg = load_registry()
    except DatasetError as e:
        raise fail(str(e)) from None
    rows = []
    for name, spec in reg.items():
        if spec.is_generated:
            d = load_dataset(name)
            stats: dict = {"n_users": d.n_users, "n_items": d.n_items, "n_ratings": len(d), "density": d.density, "duplicates_dropped": 0}
            status, source = "built-in", "generated locally"
        else:
            stats = dataset_info(name, data_dir) or {}
            status = "fetched" if stats else "not fetched"
            source = spec.urls[0] if spec.urls and not stats else (stats.get("source") or {}).get("location", "")
        if stats:
            row = [f"{stats['n_users']:,}", f"{stats['n_items']:,}", f"{stats['n_ratings']:,}",
                   f"{100 * stats['density']:.2f}%", f"{stats.get('duplicates_dropped', 0):,}"]
        else:
            row = ["", "", "", "", ""]
        rows.append([name, status, *row, source])
    console = Console()
    headers: tuple[str, ...] = ("dataset", "status", "users", "items", "ratings", "density", "duplicates dropped", "source")
    if console.width < 110:  # no room for the source
        headers, rows = headers[:-1], [r[:-1] for r in rows]
    table = Table(title="recbench datasets")
    for k, col in enumerate(headers):
        width = max([len(r[k]) for r in rows] + [min(len(col), 8)])
        if col == "source":
            table.add_column(col, overflow="fold", ratio=1)
        else:
            table.add_column(col, justify="left" if k < 2 else "right", min_width=width)
    for r in rows:
        table.add_row(*r)
    console.print(table)


@app.command("bench")
def bench_cmd(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to benchmark on.")] = "synthetic",
    models: Annotated[str | None, typer.Option("--models", "-m", help="Comma-separated model names; default: all.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per fit (0: each model's configured default).")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    repeats: Annotated[int, typer.Option(help="Fresh fits per model; medians are reported.")] = 3,
    protocol: Annotated[Protocol, typer.Option(help="Evaluation protocol(s) to time.")] = Protocol.both,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="MODEL.PARAM=VALUE", help="Override a config value: MODEL.PARAM=VALUE (repeatable).")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: torch's default, one per core; slow when another process holds a core). 1 by default, as for run.")] = 1,
    validation: Annotated[bool, typer.Option(metavar="", help="Hold out a validation item too (trains on the same pairs as RecBole's leave-one-out).")] = False,
    flops: Annotated[bool, typer.Option("--flops/--no-flops", metavar="", help="Count FLOPs per training sample.")] = True,
    matmul_n: Annotated[int, typer.Option(help="Size of the square fp32 matmul timed as the peak (0: 2048 on CPU, 8192 on CUDA).")] = 0,
    eval_runs: Annotated[int, typer.Option(help="Evaluations per protocol after each fit (the first, cold, is reported apart).")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the JSON record and markdown table.")] = Path("results/bench"),
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
) -> None:
    """Training samples/s, s/epoch, evaluation time, memory, parameters and FLOP efficiency."""
    from recbench.bench import BenchOptions, render_markdown, run_bench, write_bench
    from recbench.plan import parse_overrides
    from recbench.registry import parse_model_list

    if threads < 0:
        raise fail(f"--threads {threads}: give 0 (torch's default) or a positive count")
    try:
        names = parse_model_list(models)
        opts = BenchOptions(
            epochs=epochs or None, repeats=repeats, device=device,
            protocols=("sampled", "full") if protocol == Protocol.both else (protocol.value,),
            overrides=parse_overrides(set_ or []), out=out, data_dir=data_dir,
            validation=validation, flops=flops, threads=threads or None, matmul_n=matmul_n or None,
            eval_runs=eval_runs,
        )
        _check_datasets([dataset], data_dir)
        record = run_bench(dataset, names, opts, on_model=lambda r: err.print(
            f"{r['model']}: {r['status']}" + (f" ({r['error']})" if r["error"] else ""), highlight=False))
    except (ConfigError, ValueError) as e:
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    path, _md = write_bench(record, out)
    Console().print(render_markdown(record), markup=False, highlight=False, soft_wrap=True)
    err.print(f"wrote {path} and {path.with_suffix('.md')}", highlight=False)
    if any(r["status"] != "ok" for r in record["models"]):
        raise typer.Exit(1)


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("tune")
def tune_cmd(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Comma-separated datasets.")],
    model: Annotated[str, typer.Option("--models", "--model", "-m", help="Comma-separated model names.")],
    grid: Annotated[list[str] | None, typer.Option("--grid", metavar="MODEL.PARAM=V1,V2", help="Search values: MODEL.PARAM=V1,V2,... (repeatable; replaces the default space's values for PARAM).")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials per (dataset, model); default: the same budget for every model, from search_spaces.toml.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated model seeds per trial (the score is their mean).")] = "0",
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="MODEL.PARAM=VALUE", help="Fix a config value in every trial: MODEL.PARAM=VALUE (repeatable).")] = None,
    search_seed: Annotated[int, typer.Option(help="Seed of the random subset of the grid when --trials is smaller than it.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the split's candidate sampling.")] = 0,
    out: Annotated[Path, typer.Option(help="Results folder (trial records and tuned/<dataset>/<model>.json).")] = Path("runs"),
    force: Annotated[bool, typer.Option(metavar="", help="Redo trials whose record exists.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads on CPU (0: torch's default, one per core). 1 by default: with small batches, more threads wait on each other on a busy machine (results/bench/README.md).")] = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help=JOBS_HELP)] = 1,
    checkpoint: Annotated[bool, typer.Option("--checkpoint/--no-checkpoint", metavar="", help="Checkpoint torch fits after each epoch; a rerun resumes from the last one.")] = True,
    early_stopping: Annotated[int, typer.Option(help="Patience in epochs on the validation metric inside each trial (0: off); the trial scores its best epoch.")] = 0,
) -> None:
    """Search hyperparameters on the validation split; keep the best config per dataset and model.

    Never looks at the test item. `recbench run --tuned` applies the stored config. Trials are
    ordinary, resumable records (tagged purpose=tune, never shown by `recbench report`)."""
    from rich.table import Table

    from recbench.plan import parse_overrides
    from recbench.progress import make_reporter
    from recbench.registry import parse_model_list
    from recbench.tune import TuneOptions, parse_grid, plan, tune

    _set_threads(threads)
    try:
        names = parse_model_list(model)
        datasets = _csv(dataset)
        if not datasets:
            raise ConfigError("--dataset: give at least one dataset")
        opts = TuneOptions(
            seeds=_parse_seeds(seeds), trials=trials, search_seed=search_seed,
            fixed=parse_overrides(set_ or []), grid=parse_grid(grid or []), out=out,
            split_seed=split_seed, device=device, force=force, data_dir=data_dir,
            jobs=jobs, threads=threads, checkpoint=checkpoint, early_stopping=early_stopping,
        )
        if jobs < 1 or early_stopping < 0:
            raise ConfigError(f"--jobs {jobs} / --early-stopping {early_stopping}: must be ≥ 1 / ≥ 0")
        for m in [*opts.fixed, *opts.grid]:
            if m not in names:
                raise ConfigError(f"--set/--grid names model {m!r}, which is not in --model ({', '.join(names)})")
        plans = {m: plan(m, opts) for m in names}  # every value checked before any work
        _check_run_options(out, device)
        _check_datasets(datasets, data_dir)
        for m, (cands, size, _space) in plans.items():
            err.print(f"{m}: {len(cands)} trial(s) of a {size}-point grid", highlight=False)
        docs = []
        def trial_line(t: dict) -> None:
            params = " ".join(f"{k}={v}" for k, v in t["params"].items()) or "(defaults)"
            err.print(f"trial {params}: validation {t['score']:.4f} ({t['status']})", highlight=False, soft_wrap=True)

        with make_reporter(err) as reporter:
            for ds in datasets:
                for m in names:
                    docs.append(tune(ds, m, opts, reporter, on_trial=trial_line))
    except (ConfigError, ValueError) as e:
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    console = Console()
    for doc in docs:
        table = Table(title=f"{doc['dataset']} / {doc['model']}: validation {doc['metric'].split()[-1].upper()} per trial")
        params = list(doc["search_space"])
        for c in [*params, "validation", "status"]:
            table.add_column(c, justify="right")
        for t in sorted(doc["trials"], key=lambda t: -t["score"] if t["score"] == t["score"] else 1e9):
            best = t["params"] == doc["best"]["params"]
            row = [str(t["params"].get(p, "")) for p in params] + [f"{t['score']:.4f}", t["status"]]
            table.add_row(*row, style="bold green" if best else None)
        console.print(table)
        console.print(f"best: {doc['best']['overrides'] or '(defaults)'} (validation {doc['best']['score']:.4f}) -> {doc['path']}", highlight=False, markup=False)


@app.command("experiment")
def experiment_cmd(
    name: Annotated[str, typer.Argument(help="neg-ratio, interaction, aggregation, embedding-size or table2.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Comma-separated datasets.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated model seeds (3 or more for the published tables).")] = "0,1,2",
    epochs: Annotated[int | None, typer.Option(help="Epochs for every model (default: each model's; a change is stated in the caption).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="MODEL.PARAM=VALUE", help="Override a config value: MODEL.PARAM=VALUE (repeatable; stated in the caption).")] = None,
    values: Annotated[str | None, typer.Option(help="Run only these grid values (neg-ratio, embedding-size), e.g. 2,6,10.")] = None,
    protocol: Annotated[Protocol, typer.Option(help="sampled (the paper's) or both.")] = Protocol.sampled,
    out: Annotated[Path, typer.Option(help="Results folder: records under OUT/records, outputs under OUT/experiments/NAME (default ./runs).")] = Path("runs"),
    force: Annotated[bool, typer.Option(metavar="", help="Redo cells whose record exists.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    split_seed: Annotated[int, typer.Option(help="Seed of the split's candidate sampling.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads on CPU (0: torch's default, one per core). 1 by default: with small batches, more threads wait on each other on a busy machine (results/bench/README.md).")] = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help=JOBS_HELP)] = 1,
    checkpoint: Annotated[bool, typer.Option("--checkpoint/--no-checkpoint", metavar="", help="Checkpoint torch fits after each epoch; a rerun resumes from the last one.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="List the cells (dataset, model, settings) and exit.")] = False,
    no_fit: Annotated[bool, typer.Option("--no-fit", metavar="", help="Fit nothing: build the table and figure from the records already there and list the missing cells in the caption.")] = False,
) -> None:
    """Run one of the paper's experiments; write its table, figure and README.

    Resumable (cells are result records). Writes table.md/.csv, figure.png/.svg, report.html and
    README.md (with the exact command) under OUT/experiments/NAME."""
    import shlex

    from recbench.experiments import ExperimentOptions, plan, run_experiment
    from recbench.plan import parse_overrides
    from recbench.progress import make_reporter

    _set_threads(threads)
    try:
        datasets = _csv(dataset)
        sets = set_ or []
        cmd = ["recbench", "experiment", name, "--dataset", ",".join(datasets), "--seeds", seeds]
        cmd += ["--epochs", str(epochs)] if epochs is not None else []
        for s_ in sets:
            cmd += ["--set", s_]
        cmd += ["--values", values] if values else []
        cmd += ["--protocol", protocol.value] if protocol != Protocol.sampled else []
        cmd += ["--split-seed", str(split_seed)] if split_seed else []
        cmd += ["--out", str(out)]
        cmd += ["--no-fit"] if no_fit else []
        opts = ExperimentOptions(
            seeds=_parse_seeds(seeds), epochs=epochs, overrides=parse_overrides(sets),
            values=tuple(_csv(values)) if values else None,
            protocols=("sampled", "full") if protocol == Protocol.both else (protocol.value,),
            out=out, device=device, split_seed=split_seed, data_dir=data_dir, force=force, no_fit=no_fit,
            command=shlex.join(cmd), jobs=jobs, threads=threads, checkpoint=checkpoint,
        )
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs}: must be ≥ 1")
        _preset, cells, notes = plan(name, datasets, opts)  # every check before any work
        if dry_run:

            for c in cells:
                sys.stdout.write(f"{c.dataset}\t{c.model}\t{c.overrides}\tseeds {','.join(map(str, opts.seeds))}\n")
            sys.stdout.write(f"{len(cells)} cell(s) x {len(opts.seeds)} seed(s) = {len(cells) * len(opts.seeds)} fits\n")
            for n in notes:
                sys.stdout.write(f"note: {n}\n")
            return
        _check_run_options(out, device)
        _check_datasets(datasets, data_dir)
        with make_reporter(err) as reporter:
            res = run_experiment(name, datasets, opts, reporter)
    except (ConfigError, ValueError) as e:
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    sys.stdout.write((res.folder / "table.md").read_text())
    err.print(f"wrote {', '.join(str(f) for f in res.files)}", highlight=False, soft_wrap=True)
    if res.failed:
        err.print(f"[red]{len(res.failed)} cell(s) failed; see {res.folder / 'table.md'}[/red]")
        raise typer.Exit(1)


@app.command("models")
def models_cmd(
    name: Annotated[str | None, typer.Argument(help="One model: its config fields with defaults and valid ranges.")] = None,
) -> None:
    """The registered models: name, what it is, where it comes from; with NAME its config."""
    import dataclasses
    import typing

    from rich.table import Table

    from recbench.models.base import RANGES
    from recbench.registry import MODELS, get_model_class

    console = Console()
    if name is None:
        table = Table(title="recbench models (`recbench models NAME` for a model's config)")
        for col in ("model", "what it is", "from"):
            table.add_column(col)
        for n, cls in MODELS.items():
            table.add_row(n, cls.summary, cls.paper)
        console.print(table)
        return
    try:
        cls = get_model_class(name)
    except ConfigError as e:
        raise fail(str(e)) from None
    table = Table(title=f"{name}: {cls.summary} ({cls.paper}); --set {name}.FIELD=VALUE")
    for col in ("field", "type", "default", "valid"):
        table.add_column(col)
    hints = typing.get_type_hints(cls.Config)
    for f in dataclasses.fields(cls.Config):
        lo, hi, excl = RANGES.get(f.name, (None, None, False))
        valid = "" if lo is None and hi is None else (f"{'>' if excl else '≥'} {lo:g}" if lo is not None else "") + (f", ≤ {hi:g}" if hi is not None else "")
        t = hints[f.name]
        table.add_row(f.name, t.__name__ if isinstance(t, type) else str(t).replace("typing.", ""), repr(getattr(cls.Config(), f.name)), valid)
    console.print(table)


@app.command("diagnose")
def diagnose_cmd(
    model: Annotated[str, typer.Argument(help="A correlation-attention model: opeci (and variants), cadncf, cadncf-mhsa, outer-mlp.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset (fetched, or synthetic).")] = "synthetic",
    epochs: Annotated[int, typer.Option(help="Epochs to train before measuring (0: the fresh model).")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="MODEL.PARAM=VALUE", help="Override a config value: MODEL.PARAM=VALUE (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Model seed.")] = 0,
    items: Annotated[int, typer.Option(help="Fixed items the MLP's input is measured for.")] = 16,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: torch's default).")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the measurements as JSON.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data cache (default: RECBENCH_HOME or the user cache).")] = None,
) -> None:
    """Does the user reach the MLP? Participation ratio of the MLP's input across users, attention
    entropy, and sensitivity to shuffling a user's factor entries (recbench/diagnose.py)."""
    import json

    from recbench.diagnose import diagnose
    from recbench.models.base import config_to_dict
    from recbench.plan import parse_overrides, resolve_config
    from recbench.registry import get_model_class
    from recbench.runner import SplitSpec, load_spec, seed_everything

    _set_threads(threads)
    try:
        if epochs < 0 or items < 1 or seed < 0:
            raise ConfigError("--epochs must be ≥ 0, --items ≥ 1, --seed ≥ 0")
        sets = parse_overrides(set_ or [])
        unknown = [m for m in sets if m != model]
        if unknown:
            raise ConfigError(f"--set names model {unknown[0]!r}; diagnosing {model!r}")
        config = resolve_config(model, sets=sets.get(model, {}), epochs=epochs or None)
        m = get_model_class(model)(config)
        if not hasattr(m, "init_module"):
            raise ConfigError(f"{model}: diagnose needs a PyTorch correlation-attention model")
        _check_datasets([dataset], data_dir)
        split = load_spec(SplitSpec(dataset), data_dir)
        rng = seed_everything(seed)
        if epochs:
            m.fit(split.train, rng)
        else:
            m.init_module(split.train, rng)
        d = diagnose(m, n_items=items, seed=seed)
    except (ConfigError, TypeError, ValueError) as e:
        raise fail(str(e).splitlines()[0]) from None
    out = {"model": model, "dataset": dataset, "epochs": epochs, "seed": seed, "config": config_to_dict(config), **d.as_dict()}
    Console().print_json(json.dumps(out, default=str))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1, default=str) + "\n")


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

"""``recbench bench`` commands: ``run`` (the default: ``recbench bench --dataset ...`` is
``recbench bench run --dataset ...``), ``data``, ``make-ml1m`` and ``merge``; also run as
``python -m recbench.bench``. Thin: parse, call :mod:`recbench.bench`, write."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from recbench.cli_options import (
    DataDir,
    Device,
    Models,
    Protocol,
    Sets,
    Threads,
    apply_threads,
    csv_list,
    err,
    fail,
    first_line,
    warn,
)
from recbench.models.base import ConfigError


class DefaultRun(TyperGroup):
    """A group whose default command is ``run``: arguments that do not start with a command
    name (nor ask for the group's help) go to ``run``, so ``recbench bench --dataset ml-100k``
    keeps working."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=DefaultRun,
    context_settings={"max_content_width": 200},
    help="Speed and efficiency of every model: samples/s, s/epoch, evaluation time, memory, FLOP/s "
    "(`recbench bench [OPTIONS]` is `recbench bench run [OPTIONS]`; see `recbench bench run --help`).",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _json_text(obj: Any) -> str:
    from recbench.bench.files import _json_default

    return json.dumps(obj, indent=1, default=_json_default)


@bench_app.command("run")
def run_cmd(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Comma-separated datasets to benchmark on.")
    ] = "synthetic",
    models: Models = None,
    epochs: Annotated[int, typer.Option(help="Epochs per fit (0: each model's configured default).")] = 1,
    device: Device = "cpu",
    repeats: Annotated[int, typer.Option(help="Fresh fits per model; medians are reported.")] = 3,
    protocol: Annotated[Protocol, typer.Option(help="Evaluation protocol(s) to time.")] = Protocol.both,
    set_: Sets = None,
    threads: Threads = 1,
    validation: Annotated[
        bool,
        typer.Option(
            metavar="", help="Hold out a validation item too (trains on the same pairs as RecBole's leave-one-out)."
        ),
    ] = False,
    flops: Annotated[
        bool, typer.Option("--flops/--no-flops", metavar="", help="Count FLOPs per training sample.")
    ] = True,
    matmul_n: Annotated[
        int, typer.Option(help="Size of the square fp32 matmul timed as the peak (0: 2048 on CPU, 8192 on CUDA).")
    ] = 0,
    eval_runs: Annotated[
        int, typer.Option(help="Evaluations per protocol after each fit (the first, cold, is reported apart).")
    ] = 2,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for the records: <dataset>-<device>-<time>.json and .md, rewritten after every measured model."
        ),
    ] = Path("results/bench"),
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            metavar="",
            help="Start a new record even when OUT holds an unfinished one (a killed bench) of the same data, device "
            "and options; by default the bench resumes it, skipping the models measured there.",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Training samples/s, s/epoch, evaluation time, memory, parameters and FLOP efficiency.

    One record per data set, written after every measured model (a killed bench keeps what it
    measured; the same command again resumes it). A finished bench run again measures again,
    into a new file."""
    from recbench.bench.measure import BenchOptions
    from recbench.bench.session import bench_datasets, check_models
    from recbench.plan import parse_overrides
    from recbench.progress import make_reporter
    from recbench.registry import parse_model_list
    from recbench.runner import check_datasets

    apply_threads(threads)
    try:
        names = parse_model_list(models)
        datasets = csv_list(dataset)
        if not datasets:
            raise ConfigError("--dataset: give at least one dataset")
        opts = BenchOptions(
            epochs=epochs or None,
            repeats=repeats,
            device=device,
            protocols=protocol.protocols(),
            overrides=parse_overrides(set_ or []),
            out=out,
            data_dir=data_dir,
            validation=validation,
            flops=flops,
            threads=threads or None,
            matmul_n=matmul_n or None,
            eval_runs=eval_runs,
        )
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        check_models(names, opts)  # every value checked before a data set is fetched
        check_datasets(datasets, data_dir)
        with make_reporter(err) as reporter:
            written = bench_datasets(datasets, names, opts, reporter, fresh=fresh)
    except (ConfigError, ValueError) as e:
        raise fail(first_line(e)) from None
    from recbench.bench.files import render_markdown

    for path, record in written:
        Console().print(render_markdown(record), markup=False, highlight=False, soft_wrap=True)
        err.print(f"wrote {path} and {path.with_suffix('.md')}", highlight=False, soft_wrap=True)
    if any(m["status"] != "ok" for _path, record in written for m in record["models"]):
        raise typer.Exit(1)


@bench_app.command("data")
def data_cmd(
    file: Annotated[Path, typer.Argument(help="A ratings file in DATASET's format.")],
    dataset: Annotated[str, typer.Option(help="Registered data set whose format and preprocessing to use.")] = "ml-1m",
    repeats: Annotated[int, typer.Option(help="Timed passes (medians are reported).")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the timings to this JSON file.")] = None,
) -> None:
    """Time parse + preprocess + split of a ratings file; print the timings as JSON."""
    from recbench.atomic import write_bytes_atomic
    from recbench.bench.data_tools import bench_data

    if repeats < 1:
        raise fail(f"--repeats {repeats}: must be ≥ 1")
    if not file.is_file():
        raise fail(f"{file}: no such file")
    try:
        text = _json_text(bench_data(file, dataset, repeats))
    except ValueError as e:  # an unknown data set, a file that does not parse
        raise fail(first_line(e), code=1) from None
    if json_out is not None:
        write_bytes_atomic(json_out, (text + "\n").encode())
    sys.stdout.write(text + "\n")


@bench_app.command("make-ml1m")
def make_ml1m_cmd(
    out: Annotated[Path, typer.Argument(help="The ratings.dat to write (ML-1M's user::item::rating::time format).")],
    pairs: Annotated[
        Path | None, typer.Option(help="The shared ML-1M pairs.parquet (used when it exists; else generated).")
    ] = None,
    users: Annotated[int, typer.Option(help="Users of a generated set.")] = 6040,
    items: Annotated[int, typer.Option(help="Items of a generated set.")] = 3706,
    ratings: Annotated[int, typer.Option(help="About this many interactions in a generated set.")] = 1_000_209,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic ratings, timestamps (and generated pairs).")] = 0,
) -> None:
    """Write an ML-1M-sized ratings.dat (from pairs.parquet, else generated); print what was written."""
    from recbench.bench.data_tools import ml1m_like, write_ratings_dat

    source = pairs if pairs is not None and pairs.exists() else None
    t0 = time.perf_counter()
    cols = ml1m_like(source, seed, users, items, ratings)
    write_ratings_dat(out, *cols)
    summary = {
        "file": str(out),
        "rows": len(cols[0]),
        "source": str(source) if source else "synthetic",
        "seconds": round(time.perf_counter() - t0, 2),
    }
    sys.stdout.write(json.dumps(summary) + "\n")


@bench_app.command("merge")
def merge_cmd(
    out: Annotated[Path, typer.Argument(help="The merged JSON record to write (and its .md beside it).")],
    records: Annotated[
        list[Path] | None, typer.Argument(help="Bench JSON records (missing files are skipped).")
    ] = None,
) -> None:
    """Merge bench records of one data set and device (e.g. one process per model) into one;
    missing and unreadable files are skipped."""
    from recbench.bench.files import merge_records, save_bench

    recs = []
    for f in records or []:
        if not f.exists():
            continue
        try:
            recs.append(json.loads(f.read_text()))
        except (OSError, ValueError) as e:  # e.g. a process killed while claiming its file
            warn(f"{f}: not a bench record, skipped ({first_line(e)})")
    if not recs:
        raise fail("no records to merge", code=1)
    save_bench(merge_records(recs), out)

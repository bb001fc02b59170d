"""``recbench fetch``, ``datasets``, ``models`` and ``diagnose``: the data sets and models, and
what a model does with them (registered on the app by :mod:`recbench.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from recbench.cli_options import (
    CheckpointWeights,
    DataDir,
    Sets,
    Threads,
    Validation,
    apply_threads,
    enum_parser,
    fail,
    warn,
)
from recbench.models.base import ConfigError


def fetch_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name from datasets.toml (see `recbench datasets`).")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Local archive, data file or folder of the archive's contents, or a mirror URL."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Rebuild (and re-download) even if the cache is valid.")
    ] = False,
    data_dir: DataDir = None,
    allow_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-mismatch",
            metavar="",
            help="Accept statistics that differ from the registry's (a deliberately filtered copy; recorded in the "
            "cache and in every record).",
        ),
    ] = False,
) -> None:
    """Download (or read --from), verify, parse and cache a dataset; print its statistics."""
    import warnings

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
            data = fetch(
                name, source=from_, force=force, data_dir=data_dir, progress=True, allow_mismatch=allow_mismatch
            )
        except UnknownDataset as e:
            raise fail(str(e), code=2) from None
        except DatasetError as e:
            raise fail(str(e), code=1) from None
    for w in caught:
        warn(str(w.message))
    info = dataset_info(name, data_dir) or {}
    dups = info.get("duplicates_dropped", 0)
    verified = (info.get("source") or {}).get("verified", "generated locally")
    Console().print(
        f"{name}: {data.n_users:,} users, {data.n_items:,} items, {len(data):,} ratings, "
        f"density {100 * data.density:.2f}%, {dups:,} duplicates dropped ({verified})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def datasets_cmd(
    data_dir: DataDir = None,
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
            stats: dict = {
                "n_users": d.n_users,
                "n_items": d.n_items,
                "n_ratings": len(d),
                "density": d.density,
                "duplicates_dropped": 0,
            }
            status, source = "built-in", "generated locally"
        else:
            stats = dataset_info(name, data_dir) or {}
            status = "fetched" if stats else "not fetched"
            source = spec.urls[0] if spec.urls and not stats else (stats.get("source") or {}).get("location", "")
        if stats:
            row = [
                f"{stats['n_users']:,}",
                f"{stats['n_items']:,}",
                f"{stats['n_ratings']:,}",
                f"{100 * stats['density']:.2f}%",
                f"{stats.get('duplicates_dropped', 0):,}",
            ]
        else:
            row = ["", "", "", "", ""]
        rows.append([name, status, *row, source])
    console = Console()
    headers: tuple[str, ...] = (
        "dataset",
        "status",
        "users",
        "items",
        "ratings",
        "density",
        "duplicates dropped",
        "source",
    )
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


def models_cmd(
    name: Annotated[
        str | None, typer.Argument(help="One model: its config fields with defaults and valid ranges.")
    ] = None,
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
        valid = (
            ""
            if lo is None and hi is None
            else (f"{'>' if excl else '≥'} {lo:g}" if lo is not None else "")
            + (f", ≤ {hi:g}" if hi is not None else "")
        )
        t = hints[f.name]
        table.add_row(
            f.name,
            t.__name__ if isinstance(t, type) else str(t).replace("typing.", ""),
            repr(getattr(cls.Config(), f.name)),
            valid,
        )
    console.print(table)


def diagnose_cmd(
    model: Annotated[
        str, typer.Argument(help="A correlation-attention model: opeci (and variants), cadncf, cadncf-mhsa, outer-mlp.")
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset (fetched, or synthetic).")] = "synthetic",
    epochs: Annotated[int, typer.Option(help="Epochs to train before measuring (0: the fresh model).")] = 0,
    set_: Sets = None,
    seed: Annotated[int, typer.Option(help="Model seed.")] = 0,
    items: Annotated[int, typer.Option(help="Fixed items the MLP's input is measured for.")] = 16,
    threads: Threads = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the measurements as JSON.")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Measure a trained model: a fit's per-epoch checkpoint (OUT/.checkpoints/DATASET/MODEL/"
            "seed<s>-<key>.ckpt); give the fit's --set values (its architecture) and --validation if it "
            "trained on the validation split."
        ),
    ] = None,
    weights: Annotated[
        CheckpointWeights,
        typer.Option(
            parser=enum_parser(CheckpointWeights, "weights"),
            metavar="[best|last]",
            help="With --checkpoint: best (the best validation epoch's, as the record evaluates) or last.",
        ),
    ] = CheckpointWeights.best,
    validation: Validation = False,
    data_dir: DataDir = None,
) -> None:
    """Does the user reach the MLP? Participation ratio of the MLP's input across users, attention
    entropy, and sensitivity to shuffling a user's factor entries (recbench/diagnose.py), on a
    fresh model, one trained for --epochs, or a fit's checkpoint."""
    import json

    from recbench.checkpoint import CheckpointError
    from recbench.diagnose import diagnose, load_checkpoint
    from recbench.models.base import config_to_dict
    from recbench.numerics import set_denormals
    from recbench.plan import parse_overrides, resolve_config
    from recbench.registry import get_model_class
    from recbench.runner import SplitSpec, check_datasets, load_spec, seed_everything

    apply_threads(threads)
    set_denormals("flush")  # as every fit (recbench.numerics)
    try:
        if epochs < 0 or items < 1 or seed < 0:
            raise ConfigError("--epochs must be ≥ 0, --items ≥ 1, --seed ≥ 0")
        if checkpoint is not None and epochs:
            raise ConfigError("--checkpoint measures a fit's saved weights; --epochs trains a new one: give one")
        if checkpoint is not None and not checkpoint.is_file():
            raise ConfigError(f"--checkpoint {checkpoint}: no such file")
        sets = parse_overrides(set_ or [])
        unknown = [m for m in sets if m != model]
        if unknown:
            raise ConfigError(f"--set names model {unknown[0]!r}; diagnosing {model!r}")
        config = resolve_config(model, sets=sets.get(model, {}), epochs=epochs or None)
        m = get_model_class(model)(config)
        if not hasattr(m, "init_module"):
            raise ConfigError(f"{model}: diagnose needs a PyTorch correlation-attention model")
        check_datasets([dataset], data_dir)
        split = load_spec(SplitSpec(dataset, validation=validation), data_dir)
        rng = seed_everything(seed)
        loaded: dict[str, object] = {}
        if epochs:
            m.fit(split.train, rng)
        else:
            m.init_module(split.train, rng)
            if checkpoint is not None:
                loaded = load_checkpoint(m, checkpoint, weights.value)
        d = diagnose(m, n_items=items, seed=seed)
    except (ConfigError, CheckpointError, TypeError, ValueError) as e:
        raise fail(str(e).splitlines()[0]) from None
    out = {
        "model": model,
        "dataset": dataset,
        "epochs": loaded.pop("epochs_run", epochs),
        "seed": seed,
        "validation": validation,
        "config": config_to_dict(config),
        **loaded,
        **d.as_dict(),
    }
    Console().print_json(json.dumps(out, default=str))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1, default=str) + "\n")

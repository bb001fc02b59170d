"""Bench record files: the markdown table, atomic JSON + markdown writes (after every measured
model, so a killed bench keeps what it measured), finding an unfinished record to resume, and
merging several records into one (``recbench bench merge``)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recbench.atomic import write_bytes_atomic

__all__ = ["bench_path", "find_unfinished", "merge_records", "render_markdown", "save_bench", "write_bench"]


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _si(v: float | None) -> str:
    if v is None:
        return "—"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _eval_cell(m: dict[str, Any], proto: str) -> str:
    warm, first = m.get(f"eval_{proto}_s"), m.get(f"eval_{proto}_first_s")
    return _fmt(warm) if first is None or first == warm else f"{_fmt(warm)} ({_fmt(first)})"


def render_markdown(record: dict[str, Any]) -> str:
    """The record as a markdown table, with the run's context above it."""
    peak = record["matmul_peak"]
    hw = record["hardware"]
    si = record["split_info"]
    start, end = peak["start"], peak.get("end")
    at_end = f"{_si(end['flops_per_s'])}FLOP/s at the end" if end else "not measured at the end (unfinished)"
    head = [
        f"# recbench bench: {record['dataset']} on {record['device_resolved']} ({record['created']})",
        "",
        f"- machine: {hw.get('gpu') or hw.get('cpu')}, {hw.get('cores')} cores, "
        f"torch threads {hw.get('torch_threads')}; load average {record.get('load_average')}",
        f"- data: {si['n_users']:,} users × {si['n_items']:,} items, {si['n_train']:,} training pairs, "
        f"{si['n_eval_users']:,} evaluated users, {si['n_candidates']} sampled candidates",
        f"- fp32 matmul peak ({start['n']}³ torch.mm, median of {len(start['seconds'])}): "
        f"{_si(start['flops_per_s'])}FLOP/s at the start, {at_end}",
        f"- options: {json.dumps(record['options'], sort_keys=True)}",
    ]
    if record.get("complete") is False:
        head.append(
            f"- unfinished: {len(record['models'])} model(s) measured so far; "
            "the same command again resumes it (skipping the measured models)"
        )
    if len(record.get("runs") or ()) > 1:
        head.append(f"- measured in {len(record['runs'])} runs (each model against its own run's matmul peak)")
    head.append("")
    cols = [
        "model",
        "status",
        "epochs",
        "samples/epoch",
        "samples/s",
        "s/epoch",
        "fit s",
        "sampled eval s (first call)",
        "full eval s (first call)",
        "peak RSS MB",
        "peak GPU MB",
        "params",
        "FLOPs/sample",
        "achieved FLOP/s",
        "% of peak",
        "HR@10",
        "NDCG@10",
        "full HR@10",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m in record["models"]:
        met = m.get("metrics") or {}
        samp, full = met.get("sampled", {}), met.get("full", {})
        frac = m.get("peak_fraction")
        row = [
            m["model"],
            m["status"] if m["status"] == "ok" else f"failed: {m.get('error')}",
            _fmt(m.get("epochs")),
            _fmt(m.get("samples_per_epoch")),
            _si(m.get("samples_per_s")),
            _fmt(m.get("s_per_epoch")),
            _fmt(m.get("fit_s")),
            _eval_cell(m, "sampled"),
            _eval_cell(m, "full"),
            _fmt(m.get("peak_rss_mb"), ".0f"),
            _fmt(m.get("peak_gpu_mb"), ".0f"),
            _si(m.get("n_params")),
            _si(m.get("flops_per_sample")),
            _si(m.get("achieved_flops_per_s")),
            "—" if frac is None else f"{100 * frac:.1f}",
            _fmt(samp.get("hr@10"), ".4f"),
            _fmt(samp.get("ndcg@10"), ".4f"),
            _fmt(full.get("hr@10"), ".4f"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    for m in record["models"]:
        lines += stage_table(m)
    return "\n".join(head + lines) + "\n"


def stage_table(model_record: dict[str, Any]) -> list[str]:
    """Markdown lines of a model's per-stage rates (:mod:`recbench.bench.stages`), if any."""
    if not model_record.get("stages"):
        return []
    lines = [
        "",
        f"Per stage of one training step, {model_record['model']} (matrix-product FLOPs only; "
        "each stage timed alone, median of 5):",
        "",
        "| stage | ms | FLOPs | FLOP/s | % of peak |",
        "|---|---|---|---|---|",
    ]
    for st in model_record["stages"]:
        frac = st.get("peak_fraction")
        lines.append(
            f"| {st['stage']} | {st['ms']:.1f} | {_si(st['flops'] or None)} | "
            f"{_si(st.get('flops_per_s'))} | {'—' if frac is None else f'{100 * frac:.1f}'} |"
        )
    return lines


def bench_path(out: Path, dataset: str, device_resolved: str, created: str) -> Path:
    """Claim a new ``<dataset>-<device>-<timestamp>.json`` under ``out``: created empty and
    exclusively, so two runs in the same second never write to one file (``-1``, ``-2``...)."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = created.replace(":", "").replace("-", "").replace("+0000", "Z")
    stem = f"{dataset}-{device_resolved.replace(':', '')}-{stamp}"
    path, k = out / f"{stem}.json", 1
    while True:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            path, k = out / f"{stem}-{k}.json", k + 1


def save_bench(record: dict[str, Any], path: Path) -> Path:
    """Write ``record`` to ``path`` and its markdown table beside it (``.md``), each atomically."""
    text = json.dumps(record, indent=1, sort_keys=False, default=_json_default) + "\n"
    write_bytes_atomic(path, text.encode())
    md = path.with_suffix(".md")
    write_bytes_atomic(md, render_markdown(record).encode())
    return md


def write_bench(record: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``<dataset>-<device>-<timestamp>.json`` and ``.md`` under ``out`` (a new file each time)."""
    path = bench_path(out, record["dataset"], record["device_resolved"], record["created"])
    return path, save_bench(record, path)


def comparable(record: dict[str, Any]) -> str:
    """What must match for a rerun to add to ``record``: data, device, split and options."""
    keys = {"dataset": record["dataset"], "device": record["device_resolved"], "options": record["options"]}
    keys["split"] = (record.get("split_info") or {}).get("fingerprint")
    return json.dumps(keys, sort_keys=True, default=_json_default)


def find_unfinished(out: Path, like: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The newest unfinished record (``"complete": false``: its bench was killed) under ``out`` of
    the same data set, device, split and options as ``like``; a finished record is never resumed
    (a rerun of a finished bench measures again, into a new file)."""
    want = comparable(like)
    found = []
    for path in out.glob(f"{like['dataset']}-*.json") if out.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a claimed, never written file, or not a record
        if isinstance(rec, dict) and rec.get("kind") == "recbench-bench" and rec.get("complete") is False:
            try:
                if comparable(rec) == want:
                    found.append((rec.get("created", ""), path, rec))
            except (KeyError, TypeError):
                continue
    if not found:
        return None
    _created, path, rec = max(found, key=lambda f: (f[0], str(f[1])))
    return path, rec


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def _median(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(statistics.median(vals)) if vals else None


def merge_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record from several runs on the same data and device (e.g. one process per model, as
    ``benchmarks/gpu.sh`` runs them): the first record's context, every record's models, each
    run's own matmul peak kept beside its models (``peak_fraction`` is always against the peak
    measured in the model's own process)."""
    if not records:
        raise ValueError("nothing to merge")
    out = json.loads(json.dumps(records[0], default=_json_default))
    out["models"] = []
    out["runs"] = []
    for rec in records:
        summary = {
            "created": rec["created"],
            "command": rec["command"],
            "matmul_peak": rec["matmul_peak"],
            "load_average": rec.get("load_average"),
            "models": [m["model"] for m in rec["models"]],
        }
        out["runs"].extend(rec.get("runs") or [summary])
        out["models"].extend(rec["models"])
    peaks = [r["matmul_peak"]["flops_per_s"] for r in records if r["matmul_peak"].get("flops_per_s")]
    out["matmul_peak"]["flops_per_s"] = _median(peaks)
    out["complete"] = all(r.get("complete", True) for r in records)
    return out

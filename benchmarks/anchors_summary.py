#!/usr/bin/env python3
"""Summarise a ``benchmarks/anchors.sh`` run: recbench vs RecBole vs implicit, as ratios.

Usage: python benchmarks/anchors_summary.py OUT_DIR   (prints markdown; writes OUT_DIR/summary.json)

Every ratio is computed per round from the two runs of that round (interleaved, so drift
affects both), and the median over rounds is reported with the range. Seconds per epoch on each
side are the median of that round's per-epoch times (each library's own epoch timer: the
training loop including its negative sampling). Standard library only.
"""

from __future__ import annotations

import glob
import json
import os
import re
import statistics
import sys
from pathlib import Path


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load_json(pattern):
    files = sorted(glob.glob(pattern))
    return json.loads(Path(files[-1]).read_text()) if files else None


def ours(out, pair, r):
    rec = load_json(os.path.join(out, "raw", f"recbench-{pair}-r{r}", "*.json"))
    if rec is None or not rec["models"] or rec["models"][0]["status"] != "ok":
        return None
    m = rec["models"][0]
    epochs = [e["seconds"] for run in m["raw"] for e in run["epochs"]]
    return {
        "s_per_epoch": med(epochs) if epochs else m.get("s_per_epoch"),
        "samples_per_epoch": m.get("samples_per_epoch"),
        "fit_s": m["fit_s"],
        "eval_sampled_s": m.get("eval_sampled_s"),
        "eval_full_s": m.get("eval_full_s"),
        "eval_sampled_first_s": m.get("eval_sampled_first_s"),
        "eval_full_first_s": m.get("eval_full_first_s"),
        "hr": m["metrics"]["sampled"]["hr@10"],
        "ndcg": m["metrics"]["sampled"]["ndcg@10"],
        "full_hr": m["metrics"].get("full", {}).get("hr@10"),
        "full_ndcg": m["metrics"].get("full", {}).get("ndcg@10"),
        "peak_rss_mb": m.get("peak_rss_mb"),
        "n_train": rec["split_info"]["n_train"],
        "flops_per_sample": m.get("flops_per_sample"),
        "peak_fraction": m.get("peak_fraction"),
        "matmul_peak": rec["matmul_peak"]["flops_per_s"],
        "load": rec.get("load_average"),
    }


def recbole(out, model, r):
    path = os.path.join(out, "raw", f"recbole-{model}-r{r}.json")
    if not os.path.exists(path):
        return None
    d = json.loads(Path(path).read_text())
    return {
        "s_per_epoch": med(d["epoch_s"]),
        "samples_per_epoch": 2 * d["n_train"],  # 1 sampled negative per positive
        "fit_s": d["fit_s"],
        "eval_sampled_s": d.get("eval_uni99_s"),
        "eval_full_s": d.get("eval_full_s"),
        "hr": d.get("test_uni99", {}).get("hit@10"),
        "ndcg": d.get("test_uni99", {}).get("ndcg@10"),
        "full_hr": d.get("test_full", {}).get("hit@10"),
        "full_ndcg": d.get("test_full", {}).get("ndcg@10"),
        "peak_rss_mb": d.get("rss_peak_mb"),
        "n_train": d["n_train"],
    }


def implicit(out, r):
    path = os.path.join(out, "raw", f"implicit-r{r}.jsonl")
    if not os.path.exists(path):
        return None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            if d.get("model") == "bpr":
                return {
                    "fit_s": d["fit_s"],
                    "hr": d["hr10"],
                    "ndcg": d["ndcg10"],
                    "full_hr": d["full_hr10"],
                    "full_ndcg": d["full_ndcg10"],
                    "eval_sampled_s": d["eval_sampled_s"],
                    "eval_full_s": d["eval_full_s"],
                    "peak_rss_mb": d["peak_rss_mb"],
                }
    return None


def ratio_stats(pairs):
    """pairs: [(theirs, ours)] per round → median of theirs/ours (× faster) with its range."""
    rs = [a / b for a, b in pairs if a and b]
    if not rs:
        return None
    return {"median": statistics.median(rs), "min": min(rs), "max": max(rs), "n": len(rs)}


def fmt_ratio(s):
    if s is None:
        return "—"
    return f"**{s['median']:.2f}×** ({s['min']:.2f}–{s['max']:.2f}, n={s['n']})"


def f(x, spec=".3g"):
    return "—" if x is None else format(x, spec)


def ev(mine, proto):
    """Our warm evaluation time with the first call's in brackets (records made before the two
    were told apart hold the first call only)."""
    first = mine.get(f"eval_{proto}_first_s")
    warm = mine[f"eval_{proto}_s"]
    return f"{f(warm)} (first call only)" if first is None else f"{f(warm)} ({f(first)})"


def main(out):
    found = (re.search(r"-r(\d+)", os.path.basename(p)) for p in glob.glob(os.path.join(out, "raw", "*")))
    rounds = sorted({int(m.group(1)) for m in found if m})
    summary = {"rounds": rounds, "pairs": {}}
    lines = []
    loads = []
    lp = os.path.join(out, "raw", "load.tsv")
    if os.path.exists(lp):
        rows = [ln.split("\t") for ln in Path(lp).read_text().splitlines()[1:] if ln.strip()]
        loads = [float(r[3]) for r in rows]
    if loads:
        summary["load1"] = {
            "min": min(loads),
            "median": statistics.median(loads),
            "max": max(loads),
        }
        lines.append(
            f"1-minute load average during the runs (2 cores): median {statistics.median(loads):.2f}, "
            f"range {min(loads):.2f}–{max(loads):.2f} ({len(loads)} readings).\n"
        )

    lines.append(
        "| comparison | metric | RecBole / implicit (median) | recbench (median) | "
        "speed-up, median of per-round ratios (range) |"
    )
    lines.append("|---|---|---|---|---|")
    for pair, model in (("ncf", "NeuMF"), ("dmf", "DMF")):
        runs = [(recbole(out, model, r), ours(out, pair, r)) for r in rounds]
        runs = [(a, b) for a, b in runs if a and b]
        if not runs:
            continue
        sp = {  # every ratio > 1 means recbench is faster
            "samples_per_s": ratio_stats(
                [
                    (
                        b["samples_per_epoch"] / b["s_per_epoch"],
                        a["samples_per_epoch"] / a["s_per_epoch"],
                    )
                    for a, b in runs
                ]
            ),
            "eval_sampled": ratio_stats([(a["eval_sampled_s"], b["eval_sampled_s"]) for a, b in runs]),
            "eval_full": ratio_stats([(a["eval_full_s"], b["eval_full_s"]) for a, b in runs]),
        }
        theirs = {k: med([a[k] for a, _ in runs]) for k in runs[0][0]}
        mine = {k: med([b[k] for _, b in runs]) for k in runs[0][1] if k != "load"}
        summary["pairs"][pair] = {
            "recbole": theirs,
            "recbench": mine,
            "speedup": sp,
            "per_round": runs,
        }
        t_sps = theirs["samples_per_epoch"] / theirs["s_per_epoch"]
        o_sps = mine["samples_per_epoch"] / mine["s_per_epoch"]
        name = f"{model} vs {pair}"
        lines.append(
            f"| {name} | training samples/s (s/epoch) | {t_sps:,.0f} ({theirs['s_per_epoch']:.2f}) | "
            f"{o_sps:,.0f} ({mine['s_per_epoch']:.2f}) | {fmt_ratio(sp['samples_per_s'])} |"
        )
        lines.append(
            f"| {name} | sampled eval s, 943 users × 100 cand. (ours: first call after the fit) | "
            f"{f(theirs['eval_sampled_s'])} | {ev(mine, 'sampled')} | {fmt_ratio(sp['eval_sampled'])} |"
        )
        lines.append(
            f"| {name} | full-ranking eval s, 943 users (ours: first call) | {f(theirs['eval_full_s'])} | "
            f"{ev(mine, 'full')} | {fmt_ratio(sp['eval_full'])} |"
        )
        lines.append(
            f"| {name} | HR@10 / NDCG@10 (100 cand.) | {f(theirs['hr'], '.4f')} / {f(theirs['ndcg'], '.4f')} | "
            f"{f(mine['hr'], '.4f')} / {f(mine['ndcg'], '.4f')} | |"
        )
        lines.append(
            f"| {name} | full HR@10 / NDCG@10 | {f(theirs['full_hr'], '.4f')} / {f(theirs['full_ndcg'], '.4f')} | "
            f"{f(mine['full_hr'], '.4f')} / {f(mine['full_ndcg'], '.4f')} | |"
        )
        lines.append(
            f"| {name} | peak RSS MB (whole process) | {f(theirs['peak_rss_mb'], '.0f')} | "
            f"{f(mine['peak_rss_mb'], '.0f')} | |"
        )
        if mine.get("flops_per_sample"):
            lines.append(
                f"| {name} | FLOPs/sample; % of fp32 matmul peak | | {mine['flops_per_sample']:,.0f}; "
                f"{100 * mine['peak_fraction']:.1f} % of {mine['matmul_peak'] / 1e9:.0f} GFLOP/s | |"
            )
    runs = [(implicit(out, r), ours(out, "bpr", r)) for r in rounds]
    runs = [(a, b) for a, b in runs if a and b]
    if runs:
        sp = {"fit": ratio_stats([(a["fit_s"], b["fit_s"]) for a, b in runs])}
        theirs = {k: med([a[k] for a, _ in runs]) for k in runs[0][0]}
        mine = {k: med([b[k] for _, b in runs]) for k in runs[0][1] if k != "load"}
        summary["pairs"]["bpr"] = {
            "implicit": theirs,
            "recbench": mine,
            "speedup": sp,
            "per_round": runs,
        }
        lines.append(
            f"| implicit BPR vs bpr | fit s (100 iterations) | {f(theirs['fit_s'])} | {f(mine['fit_s'])} | "
            f"{fmt_ratio(sp['fit'])} (implicit time / ours) |"
        )
        lines.append(
            f"| implicit BPR vs bpr | HR@10 / NDCG@10 (100 cand.) | "
            f"{f(theirs['hr'], '.4f')} / {f(theirs['ndcg'], '.4f')} | "
            f"{f(mine['hr'], '.4f')} / {f(mine['ndcg'], '.4f')} | |"
        )
        lines.append(
            f"| implicit BPR vs bpr | full HR@10 / NDCG@10 | "
            f"{f(theirs['full_hr'], '.4f')} / {f(theirs['full_ndcg'], '.4f')} | "
            f"{f(mine['full_hr'], '.4f')} / {f(mine['full_ndcg'], '.4f')} | |"
        )
        lines.append(
            f"| implicit BPR vs bpr | sampled / full eval s (implicit: ranking only, scores precomputed) | "
            f"{f(theirs['eval_sampled_s'])} / {f(theirs['eval_full_s'])} | "
            f"{f(mine['eval_sampled_s'])} / {f(mine['eval_full_s'])} | |"
        )
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])

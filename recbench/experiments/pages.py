"""An experiment's outputs under ``OUT/experiments/NAME/``, rebuilt from the records each time:
``table.md`` and ``table.csv``, ``figure.png`` and ``figure.svg``, ``report.html`` (the tables and
the figure on one page) and ``README.md`` with the exact command; the caption carries every
departure from the paper's settings."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure

from recbench import figures, report
from recbench.experiments.cells import ExperimentOptions, regenerate_command, short_notes
from recbench.experiments.plots import Spread, epoch_figure, param_figure
from recbench.experiments.presets import Preset, load_presets
from recbench.experiments.tables import (
    Part,
    curve_table,
    default_note,
    epoch_curves,
    paper_points,
    paragraph,
    param_table,
    pivot_part,
    report_parts,
    table_part,
)
from recbench.models.base import ConfigError
from recbench.results import Record


@dataclass
class ExperimentResult:
    """What :func:`write_outputs` wrote (``files`` under ``folder``) and from what: the records,
    the caption's notes and the failed cells."""

    name: str
    folder: Path
    files: list[Path]
    records: list[Record]
    notes: list[str]
    failed: list[str]


def write_outputs(
    p: Preset, datasets: list[str], records: list[Record], notes: list[str], opts: ExperimentOptions
) -> ExperimentResult:
    """The table (markdown, CSV), figure (PNG, SVG), HTML page and README, from ``records``."""
    folder = opts.out / "experiments" / p.name
    folder.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r.status == "ok"]
    failed = report.failures(records)
    if not ok:
        raise ConfigError(f"experiment {p.name!r}: every cell failed ({failed[0] if failed else 'no cells'})")
    cell_of = lambda r: (r["dataset"], r["model"], json.dumps(r["config"], sort_keys=True))  # noqa: E731
    counts: dict[tuple[str, str, str], int] = {}
    for r in ok:
        counts[cell_of(r)] = counts.get(cell_of(r), 0) + 1
    spread = Spread(min(counts.values()), max(counts.values()))
    negs = sorted({int((r.data.get("split_info") or {}).get("n_negatives", 99)) for r in ok})
    cands = " / ".join(str(n + 1) for n in negs) + " candidates per user"
    title = p.title
    presets = load_presets()
    files: list[Path] = []
    parts: list[Part]

    if p.param is not None:
        rep = report.build_report(None, p.metrics, paper=False, records=ok, label=lambda r: str(r["config"][p.param]))
        paper, paper_label = paper_points(p, datasets, presets)
        table, tidy = param_table(p, rep, paper)
        xlabel = {
            "n_negatives": "negative sampling ratio (negatives per positive)",
            "embedding_size": "embedding size d",
        }.get(p.param, p.param)
        fig_err = spread.drawn("error bars")
        fig = param_figure(tidy, xlabel, spread, logx=p.param == "embedding_size", paper_label=paper_label)
        parts = [table]
        csv = tidy
        if p.paper == "table3.csv":
            paper_text = "; the paper's Table 3 in parentheses (every point it has, also where ours is not run)."
        elif paper is not None and not paper.empty:
            paper_text = (
                "; in parentheses the paper's Table 2 value of OPECI at the paper's d (the paper "
                "publishes Figure 4 as a plot only)."
            )
        else:
            paper_text = "."
        caption = (
            f"{title}. OPECI, sampled protocol ({cands}), {spread.summary}; best per row in bold"
            f"{paper_text} {default_note(p, datasets, presets)}"
        )
    elif p.eval_every:
        rep = report.build_report(
            None, p.metrics, paper=False, records=ok, label=report.base_label, reference=p.reference
        )
        curves = epoch_curves(ok)
        if curves.empty:
            raise ConfigError(f"experiment {p.name!r}: the records hold no per-epoch test metrics (eval_every=1)")
        fig_err = spread.drawn("bands")
        fig = epoch_figure(curves, "ndcg@10")
        parts = [
            table_part(curve_table(curves, p.metrics)),
            paragraph("Final models (after the last epoch):"),
            pivot_part(rep.summary),
            paragraph(report.legend(rep, "sampled")),
        ]
        csv = curves.groupby(["dataset", "model", "epoch"])[["hr@10", "ndcg@10"]].agg(["mean", "std", "count"])
        csv.columns = [f"{a}_{b}" for a, b in csv.columns]
        csv = csv.reset_index()
        curves.to_csv(folder / "curves_per_seed.csv", index=False)
        files.append(folder / "curves_per_seed.csv")
        caption = (
            f"{title}. NDCG@10 on the test split (sampled protocol) after each epoch, {spread.summary}; "
            "the table gives each model after its last epoch (no epoch is chosen on the test split)."
        )
    else:
        paper_flag = p.name == "table2"
        rep = report.build_report(
            None, p.metrics, paper=paper_flag, records=ok, label=report.base_label, reference=p.reference
        )
        models = [m for m in p.models if m in set(rep.summary["model"])]
        fig = figures.summary_bars(
            rep.summary, "sampled", models, title, paper_note="white diamonds: the paper's Table 2"
        )
        has_paper = rep.summary["paper"].notna().any()
        fig_err = spread.drawn("error bars") + ("; white diamonds: the paper's Table 2" if has_paper else "")
        if p.name == "table2":
            parts = report_parts(rep)
        else:
            parts = [pivot_part(rep.summary), paragraph(report.legend(rep, "sampled") + " Best per row in bold.")]
        csv = rep.summary
        caption = f"{title}. Sampled protocol ({cands}); {spread.summary}."

    caption_full = " ".join([caption, *notes])
    table_md = "\n\n".join(pt.md for pt in parts)
    table_text = f"**{caption_full}**\n\n{table_md}\n"
    if failed:
        table_text += "\nFailed cells:\n" + "\n".join(f"- {f}" for f in failed) + "\n"
        items = "".join(f"<li>{html.escape(f)}</li>" for f in failed)
        parts = [*parts, Part("", f"<p>Failed cells:</p><ul>{items}</ul>")]
    (folder / "table.md").write_text(table_text)
    csv.to_csv(folder / "table.csv", index=False)
    files += [folder / "table.md", folder / "table.csv"]
    short = short_notes(p, datasets, opts)
    figures.retitle(
        fig, f"{title}\n({fig_err})", ("Reduced/changed settings (see README): " + "; ".join(short)) if short else ""
    )
    files += figures.save(fig, folder / "figure")
    files.append(_write_html(folder, p, caption_full, parts, fig))
    files.append(_write_readme(folder, p, datasets, opts, caption_full, table_text))
    return ExperimentResult(p.name, folder, files, records, notes, failed)


def _write_html(folder: Path, p: Preset, caption: str, parts: list[Part], fig: Figure) -> Path:
    """One self-contained page: caption, tables (built from the data) and the figure (base64 PNG)."""
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}img{max-width:100%}"
    )
    body = [f"<h1>{html.escape(p.title)}</h1>", f"<p>{html.escape(caption)}</p>", *(pt.html for pt in parts)]
    body.append(
        f"<figure><img alt='{html.escape(p.title)}' src='data:image/png;base64,{figures.png_base64(fig)}'/>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
    path = folder / "report.html"
    path.write_text(
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(p.title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return path


def _write_readme(
    folder: Path, p: Preset, datasets: list[str], opts: ExperimentOptions, caption: str, table_text: str
) -> Path:
    """README.md: the exact command, the settings, the figure and the table."""
    cmd = regenerate_command(p, datasets, opts)
    lines = [
        f"# {p.title}",
        "",
        "Regenerate (fits every cell not run yet and reuses the result records under "
        f"`{opts.out}/records`; finished cells are not redone):",
        "",
        "```bash",
        cmd,
        "```",
        "",
        f"- models: {', '.join(p.models)}"
        + (f"; {p.param} ∈ {{{', '.join(map(str, p.values))}}} in the preset" if p.param else ""),
        f"- datasets: {', '.join(datasets)}; seeds: {', '.join(map(str, opts.seeds))}; "
        f"protocol(s): {', '.join(opts.protocols)}",
        f"- the paper's per-dataset settings: {_settings_text(datasets)}",
        f"- written {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "Files: `table.md`, `table.csv`, `figure.png`, `figure.svg`, `report.html`"
        + (" and `curves_per_seed.csv`" if p.eval_every else "")
        + ".",
        "",
        "![figure](figure.png)",
        "",
        table_text,
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _settings_text(datasets: list[str]) -> str:
    """The paper's settings of each data set, in words."""
    presets = load_presets()
    parts = []
    for d in datasets:
        s = presets.get("paper_settings", {}).get(d)
        if not s:
            parts.append(f"{d}: none (model defaults)")
        else:
            parts.append(
                f"{d}: " + "; ".join(f"{m} " + ", ".join(f"{k}={v}" for k, v in kv.items()) for m, kv in s.items())
            )
    return " · ".join(parts)

"""The report as one self-contained HTML page: the tables and the figures (base64 PNG)."""

from __future__ import annotations

import html
from typing import Any

from recbench.report.build import Report
from recbench.report.labels import order_models
from recbench.report.tables import (
    COST_NOTE,
    HTML_STYLE,
    agreement_table,
    cost_table,
    curves_note,
    curves_table,
    legend,
    pivot,
    proto_title,
    side_by_side,
    stats_table,
)


def render_html(rep: Report, paper: bool) -> str:
    """The whole report as one HTML page with its figures embedded."""
    from recbench import figures

    body = [f"<h1>{html.escape(rep.title)}</h1>"]
    models = order_models(rep.summary["model"]) if not rep.summary.empty else []
    for proto in rep.protocols:
        t = pivot(rep.summary, proto, paper and proto == "sampled", style={**HTML_STYLE, "mark": "&dagger;"})
        body.append(f"<h2>{html.escape(proto_title(rep, proto))}</h2>")
        body.append(f"<p class='legend'>{html.escape(legend(rep, proto))} Best per row in bold, second underlined.</p>")
        body.append(t.reset_index().to_html(escape=False, border=0, classes="results", index=False))
    for proto in rep.protocols:
        body.append(f"<h2>Statistics, {proto} protocol</h2>")
        body.append(stats_table(rep, proto).to_html(border=0, classes="stats", index=False))
    if not rep.agreement.empty:
        body.append("<h2>Sampled against full ranking</h2>")
        body.append(side_by_side(rep).to_html(border=0, classes="stats", index=False))
        body.append(agreement_table(rep).to_html(border=0, classes="stats", index=False))
        for w in rep.warnings:
            body.append(f"<p class='warning'>Warning: {html.escape(w)}</p>")
    curves = curves_table(rep)
    if not curves.empty:
        body.append(f"<h2>Validation curves</h2><p class='legend'>{html.escape(curves_note())}</p>")
        body.append(curves.to_html(border=0, classes="stats", index=False))
    if not rep.cost.empty:
        body.append(f"<h2>Cost</h2><p class='legend'>{html.escape(COST_NOTE)}</p>")
        body.append(cost_table(rep).to_html(border=0, classes="stats", index=False))
    figs: list[tuple[str, Any]] = []
    for proto in rep.protocols:
        f = figures.summary_bars(rep.summary, proto, models, f"{proto.capitalize()} protocol")
        if f is not None:
            figs.append(
                (
                    f"{proto_title(rep, proto)}. Bars: mean over seeds; {figures.ERR_NOTE}; "
                    "white diamonds: the paper's numbers.",
                    f,
                )
            )
    f = figures.agreement_scatter(rep.summary, models)
    if f is not None:
        figs.append(("Sampled (x) against full-ranking (y) metrics per model.", f))
    if not rep.curves.empty:
        wide = rep.curves.pivot_table(index=["dataset", "model", "seed", "epoch"], columns="metric", values="value")
        wide = wide.reset_index()
        for met in [m for m in ("ndcg@10", "hr@10") if m in wide]:
            f = figures.epoch_curves(
                wide, met, f"Validation {figures.metric_label(met)} per epoch", ylabel="validation"
            )
            figs.append((f"Validation {met.upper()} per epoch: mean over seeds, band ± std.", f))
    figs += rep.figures
    if figs:
        body.append("<h2>Figures</h2>")
        for cap, fig in figs:
            body.append(
                f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{figures.png_base64(fig)}'/>"
                f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
    if rep.failed:
        body.append("<h2>Failed cells</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in rep.failed) + "</ul>")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}"
        ".legend{color:#333;font-size:90%}.warning{color:#a40;font-weight:bold}"
        "figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:90%;color:#333}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(rep.title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )

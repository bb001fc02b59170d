"""``render``: a built report in one of the output formats."""

from __future__ import annotations

import json

from recbench.report.build import Report
from recbench.report.html_page import render_html
from recbench.report.latex import render_latex
from recbench.report.markdown import render_markdown
from recbench.report.tables import legend

FORMATS = ("markdown", "csv", "latex", "json", "html")


def render(rep: Report, fmt: str, paper: bool = True) -> str:
    """The report in ``fmt`` (markdown, csv, latex, json, html)."""
    if fmt == "csv":
        return rep.summary.to_csv(index=False)
    if fmt == "json":
        return json.dumps(
            {
                "rows": json.loads(rep.summary.to_json(orient="records")),
                "agreement": json.loads(rep.agreement.to_json(orient="records")),
                "reference": rep.reference,
                "references": rep.references,
                "test": rep.test,
                "alpha": rep.alpha,
                "legend": {p: legend(rep, p) for p in rep.protocols},
                "warnings": rep.warnings,
                "cost": json.loads(rep.cost.to_json(orient="records")),
                "validation_curves": json.loads(rep.curves.to_json(orient="records")),
                "failed": rep.failed,
            },
            indent=1,
        )
    if fmt == "markdown":
        return render_markdown(rep, paper)
    if fmt == "latex":
        return render_latex(rep)
    if fmt == "html":
        return render_html(rep, paper)
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")

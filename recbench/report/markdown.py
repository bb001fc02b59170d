"""The report as markdown: the paper's Table 2 layout, one table per protocol, statistics,
sampled against full ranking, validation curves, cost and failures."""

from __future__ import annotations

from recbench.report.build import Report
from recbench.report.tables import (
    COST_NOTE,
    MD_STYLE,
    agreement_table,
    cost_table,
    curves_note,
    curves_table,
    legend,
    markdown_table,
    pivot,
    proto_title,
    side_by_side,
    stats_table,
    table2_view,
)


def _table2_markdown(rep: Report) -> list[str]:
    """The paper's Table 2 layout with the paper's values and the other configurations."""
    ours, paper, others, chosen = table2_view(rep)
    if ours.empty:
        return []
    shown = "; ".join(f"{m} = {lab}" for m, lab in chosen.items() if lab != m)
    parts = [
        "### Table 2 (sampled protocol), as the paper lays it out\n\n"
        "Mean ± std over model seeds (the number of seeds in parentheses); one configuration per model"
        + (f" ({shown})" if shown else "")
        + ". The paper's values are in the next table; every other "
        "configuration and variant after it; statistics and the full-ranking protocol below.\n",
        markdown_table(ours),
        "\nThe paper's Table 2 (HR@10 / NDCG@10, sampled protocol):\n",
        markdown_table(paper),
    ]
    if not others.empty:
        parts += ["\nOther configurations and variants (sampled protocol):\n", markdown_table(others)]
    return parts


def render_markdown(rep: Report, paper: bool) -> str:
    """The whole report as markdown (the paper's numbers beside ours when ``paper``)."""
    parts = _table2_markdown(rep) if paper else []
    for proto in rep.protocols:
        t = pivot(rep.summary, proto, paper and proto == "sampled", style=MD_STYLE)
        parts.append(f"### {proto_title(rep, proto)}\n\n{legend(rep, proto)} Best per row in bold.\n")
        parts.append(markdown_table(t.reset_index()))
    for proto in rep.protocols:
        parts.append(f"### Statistics, {proto} protocol: 95 % confidence interval (t, over seeds) and paired tests\n")
        parts.append(markdown_table(stats_table(rep, proto)))
    if not rep.agreement.empty:
        parts.append(
            "### Sampled against full ranking\n\nEach model's score and rank under both protocols; "
            "Kendall τ between the two orderings of the models (1: same order).\n"
        )
        parts.append(markdown_table(side_by_side(rep)))
        parts.append(markdown_table(agreement_table(rep)))
        warns = rep.warnings
        parts.append(
            "\n".join(f"> **Warning:** {w}" for w in warns)
            if warns
            else "The two protocols order the models the same way on every dataset and metric."
        )
    curves = curves_table(rep)
    if not curves.empty:
        parts.append(f"### Validation curves\n\n{curves_note()}\n")
        parts.append(markdown_table(curves))
    if not rep.cost.empty:
        parts.append(f"### Cost\n\n{COST_NOTE}\n")
        parts.append(markdown_table(cost_table(rep)))
    if rep.failed:
        parts.append("Failed cells:\n" + "\n".join(f"- {f}" for f in rep.failed))
    return "\n\n".join(parts) + "\n"

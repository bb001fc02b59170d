"""The report as LaTeX (booktabs): the paper's Table 2 layout and one table per protocol, bold
for the best and underline for the second best, the marks explained in the caption."""

from __future__ import annotations

import pandas as pd

from recbench.data.registry import dataset_label
from recbench.report.build import Report
from recbench.report.tables import TEX_STYLE, legend, pivot, proto_title, table2_view

_TEX_ESC = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def tex_escape(s: str) -> str:
    """Escape every LaTeX special character of plain text."""
    return "".join(_TEX_ESC.get(c, c) for c in str(s))


def render_latex(rep: Report) -> str:
    """The report's tables as LaTeX (needs ``booktabs``)."""
    parts = []
    ours, paper_t, _others, chosen = table2_view(rep)
    if not ours.empty:  # the paper's layout, short names, one row of the paper's values per metric
        rows = []
        for (_, o), (_, pp) in zip(ours.iterrows(), paper_t.iterrows(), strict=True):
            rows.append([tex_escape(o["Dataset"]), tex_escape(o["Metric"]), *[tex_escape_text(o[m]) for m in chosen]])
            rows.append(["", "\\textit{paper}", *[pp[m] for m in chosen]])
        head = " & ".join(["Dataset", "Metric", *[tex_escape(m) for m in chosen]])
        body = "\n".join(" & ".join(r) + " \\\\" for r in rows)
        shown = "; ".join(f"{tex_escape(m)}: {tex_escape(lab)}" for m, lab in chosen.items() if lab != m)
        cap = tex_escape_text(
            "HR@10 and NDCG@10, sampled protocol (99 negatives): mean ± std over model seeds "
            "(seeds in parentheses), the paper's Table 2 below each row."
        ) + (f" Configurations: {shown}." if shown else "")
        parts.append(
            "\\begin{table}[t]\n\\centering\n\\small\n\\setlength{\\tabcolsep}{3pt}\n"
            f"\\caption{{{cap}}}\n\\label{{tab:recbench-table2}}\n"
            f"\\begin{{tabular}}{{ll{'c' * len(chosen)}}}\n\\toprule\n{head} \\\\\n"
            f"\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n"
            "\\end{table}\n"
        )
    for proto in rep.protocols:
        sub = rep.summary[rep.summary["protocol"] == proto].copy()
        sub["model"] = sub["model"].map(tex_escape)
        t = pivot(sub, proto, False, style=TEX_STYLE).replace("—", "--").reset_index()
        t["Dataset"] = t["Dataset"].map(tex_escape).where(t["Dataset"].ne(t["Dataset"].shift()), "")
        t["Metric"] = t["Metric"].map(tex_escape)
        t.columns = [f"{{{c}}}" for c in t.columns]
        body = t.to_latex(escape=False, index=False, column_format="ll" + "c" * (len(t.columns) - 2))
        cap = [
            f"{proto_title(rep, proto)}.",
            legend(rep, proto, mark="$^{\\dagger}$"),
            "Best per row in bold, second best underlined.",
        ]
        if proto == "full" and not rep.agreement.empty:
            taus = ", ".join(
                f"{dataset_label(r['dataset'])} {r['metric'].upper()} "
                f"{'--' if pd.isna(r['tau']) else format(r['tau'], '.2f')}"
                for _, r in rep.agreement.iterrows()
            )
            cap.append(f"Kendall $\\tau$ between the sampled and the full-ranking orderings of the models: {taus}.")
            if rep.warnings:
                cap.append(
                    "Where $\\tau < 1$ the two protocols order the models differently (Krichene and Rendle, KDD 2020)."
                )
        caption = tex_escape_text(" ".join(cap))
        parts.append(
            "\\begin{table}[t]\n\\centering\n\\small\n"
            f"\\caption{{{caption}}}\n"
            f"\\label{{tab:recbench-{proto}}}\n" + body + "\\end{table}\n"
        )
    return "% requires \\usepackage{booktabs}\n" + "\n".join(parts)


def tex_escape_text(s: str) -> str:
    """Escape prose that may already contain a few LaTeX commands (math, \\dagger): only the
    characters that would break compilation outside them."""
    out = []
    in_math = False
    for c in s:
        if c == "$":
            in_math = not in_math
            out.append(c)
        elif not in_math and c in "&%#_":
            out.append("\\" + c)
        elif c == "τ":
            out.append("$\\tau$" if not in_math else "\\tau")
        elif c == "–":
            out.append("--")
        elif c == "—":
            out.append("---")
        elif c == "±":
            out.append("$\\pm$" if not in_math else "\\pm")
        elif c in "<>" and not in_math:
            out.append(f"${c}$")
        elif c == "Δ":
            out.append("$\\Delta$")
        elif c == "·":
            out.append("$\\cdot$")
        else:
            out.append(c)
    return "".join(out)

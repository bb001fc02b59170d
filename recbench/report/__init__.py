"""``recbench report``: a Table-2-style comparison from result records, with its statistics.

Rows are (dataset, metric), columns are models; each cell is the mean ± std over seeds, the best
per row is marked, and the paper's number (``recbench/paper/table2.csv``, data not code) is
shown beside ours with the difference. Metrics are recomputed from the stored per-user ranks, so
any K can be reported after the fact. Every report also carries (:mod:`recbench.stats`):

- the 95 % t confidence interval over seeds;
- a paired test over users between a reference model (``--reference``, default ``opeci`` when
  present) and every other model: per-user metric values averaged over seeds, users aligned by
  the ranks files' ``users`` arrays, the same split fingerprint required; Wilcoxon signed-rank
  (default) or a paired bootstrap; Holm's correction across the comparisons of one row
  (dataset × protocol × metric); significant differences marked † in the tables;
- sampled and full-ranking metrics side by side with Kendall's τ between the two orderings of
  the models per dataset and metric, and a warning where the orderings disagree (Krichene &
  Rendle, KDD 2020).

CSV and JSON give the tidy long table (one row per dataset, protocol, metric and model, with
the statistics as columns), which parses back with pandas / json. LaTeX uses booktabs, bold for
the best and underline for the second best, and explains the marks in the caption. HTML is one
self-contained page with the tables and the figures embedded (base64 PNG).

Which records: tuning trials (tag ``purpose = "tune"``) never; experiment records (tag
``experiment``) only with ``experiment=NAME``, and then only those.

The package: :mod:`~recbench.report.labels` (how a record is named),
:mod:`~recbench.report.frames` (the tidy frames and statistics), :mod:`~recbench.report.build`
(:class:`Report`, pooling, :func:`build_report`), :mod:`~recbench.report.tables` (formatted
tables) and the renderers :mod:`~recbench.report.markdown`, :mod:`~recbench.report.latex`,
:mod:`~recbench.report.html_page` behind :func:`render` (:mod:`~recbench.report.formats`).
Importing it imports no torch (labels come from the records; see :mod:`recbench.report.labels`).
"""

from __future__ import annotations

from recbench.report.build import Report, build_report, failures, pool_records
from recbench.report.formats import FORMATS, render
from recbench.report.frames import (
    AGREE_COLUMNS,
    COST_COLUMNS,
    CURVE_COLUMNS,
    KR_NOTE,
    SIG_COLUMNS,
    SUMMARY_COLUMNS,
    agreement_frame,
    agreement_warnings,
    cost_frame,
    paper_table2,
    per_seed_frame,
    resolve_reference,
    resolve_references,
    select_records,
    significance_frame,
    summary_frame,
    validation_curves,
)
from recbench.report.html_page import render_html
from recbench.report.labels import (
    PAPER_ORDER,
    Label,
    base_label,
    format_value,
    label_model,
    model_label,
    order_models,
    record_label,
    record_overrides,
)
from recbench.report.latex import render_latex, tex_escape, tex_escape_text
from recbench.report.markdown import render_markdown
from recbench.report.tables import (
    COST_NOTE,
    HTML_STYLE,
    MARK,
    MD_STYLE,
    TABLE2_MODELS,
    TEST_NAMES,
    TEX_STYLE,
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

__all__ = [
    "AGREE_COLUMNS",
    "COST_COLUMNS",
    "COST_NOTE",
    "CURVE_COLUMNS",
    "FORMATS",
    "HTML_STYLE",
    "KR_NOTE",
    "MARK",
    "MD_STYLE",
    "PAPER_ORDER",
    "SIG_COLUMNS",
    "SUMMARY_COLUMNS",
    "TABLE2_MODELS",
    "TEST_NAMES",
    "TEX_STYLE",
    "Label",
    "Report",
    "agreement_frame",
    "agreement_table",
    "agreement_warnings",
    "base_label",
    "build_report",
    "cost_frame",
    "cost_table",
    "curves_note",
    "curves_table",
    "failures",
    "format_value",
    "label_model",
    "legend",
    "markdown_table",
    "model_label",
    "order_models",
    "paper_table2",
    "per_seed_frame",
    "pivot",
    "pool_records",
    "proto_title",
    "record_label",
    "record_overrides",
    "render",
    "render_html",
    "render_latex",
    "render_markdown",
    "resolve_reference",
    "resolve_references",
    "select_records",
    "side_by_side",
    "significance_frame",
    "stats_table",
    "summary_frame",
    "table2_view",
    "tex_escape",
    "tex_escape_text",
    "validation_curves",
]

"""``recbench experiment NAME``: the paper's table and figures, one command each.

``neg-ratio`` (Table 3), ``interaction`` (Figure 2), ``aggregation`` (Figure 3),
``embedding-size`` (Figure 4) and ``table2`` (the main comparison); ``interaction-res`` and
``aggregation-res`` ask Figures 2 and 3 of the residual reading ``opeci-res``. The presets (models, grids,
the paper's per-dataset settings) are data in ``recbench/experiments.toml``; the paper's Table 3
is ``recbench/paper/table3.csv``.

Every cell is an ordinary result record (tagged ``{"experiment": NAME}``) under ``OUT/records``,
so an experiment resumes where it stopped and a grid can accumulate over several runs; the tag
labels a record without being part of its key, so one fit serves every experiment (and plain
``recbench run``) that asks for the same cell, and the record lists the experiments that reused
it (``used_by``). OPECI-family cells record a per-epoch curve everywhere (``[curves]`` in the
presets) so that they are the same cell in every experiment. The
tables and figures are rebuilt from the records each time. Outputs, under
``OUT/experiments/NAME/``: ``table.md`` and ``table.csv``, ``figure.png`` and ``figure.svg``,
``report.html`` (the table and figure on one page) and ``README.md`` with the exact command.
Anything that departs from the paper's settings (``--epochs``, ``--set``, ``--values``, fewer
than three seeds, a dataset without paper settings) is written in the caption and the README,
never silently.

The package, in the order of the data flow: :mod:`~recbench.experiments.presets` (the presets
and the paper's settings), :mod:`~recbench.experiments.cells` (options → cells, every check
before any work, and the departures from the paper in words), :mod:`~recbench.experiments.run`
(cells → result records), :mod:`~recbench.experiments.pages` (records → the files above, from
the tables of :mod:`~recbench.experiments.tables` and the figures of
:mod:`~recbench.experiments.plots`). The submodules import one another, never this package.
"""

from __future__ import annotations

from recbench.experiments.cells import (
    Cell,
    ExperimentOptions,
    caption_notes,
    plan,
    regenerate_command,
    short_notes,
)
from recbench.experiments.pages import ExperimentResult, write_outputs
from recbench.experiments.presets import (
    EXPERIMENTS,
    MIN_SEEDS,
    Preset,
    check_models,
    get_preset,
    load_presets,
    paper_settings,
    paper_table3,
)
from recbench.experiments.run import run_experiment

__all__ = [
    "EXPERIMENTS",
    "MIN_SEEDS",
    "Cell",
    "ExperimentOptions",
    "ExperimentResult",
    "Preset",
    "caption_notes",
    "check_models",
    "get_preset",
    "load_presets",
    "paper_settings",
    "paper_table3",
    "plan",
    "regenerate_command",
    "run_experiment",
    "short_notes",
    "write_outputs",
]

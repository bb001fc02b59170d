#!/usr/bin/env bash
# Issue 13: the tuned optima that sit at an end of their model's grid, checked one step beyond
# it (validation item only, as `recbench tune`; early stopping with patience 2 inside a trial).
# The published tuned configs stay those of the declared grids (the same budget for every
# model); these trials only say whether a wider grid would have found a better baseline. They
# go to their own folder (results/grid-edges), so they change nothing under results/tuned.
#
#   bash benchmarks/grid_edges.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/grid-edges}
common=(--early-stopping 2 --out "$OUT" --threads 1)
recbench tune --dataset ml-100k --model ncf --grid ncf.learning_rate=0.02,0.05 "${common[@]}"   # best 0.01, the top
recbench tune --dataset filmtrust --model bpr --grid bpr.learning_rate=0.001,0.0025 "${common[@]}"  # best 0.005, the bottom
recbench tune --dataset filmtrust --model dmf --set dmf.epochs=10 --grid dmf.learning_rate=0.005,0.01 "${common[@]}"  # best 0.001, the top

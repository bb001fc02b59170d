#!/usr/bin/env bash
# Issue 13: is OPECI's precise BN (re-estimating the head's batch-norm statistics after each
# epoch, `precise_bn_batches = 50`) still needed now that L2 is at the paper's scale and the
# weights no longer shrink every step? Validation item only.
#  - FilmTrust, seed 0, 5 epochs, early stopping with patience 2: precise BN off, beside the
#    tuning trial of the same config with it on (results/records, the lr 1e-3 trial);
#  - the built-in synthetic data set, seeds 0-4, the default 20 epochs: off and on, side by side.
#
#   bash benchmarks/precise_bn.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/issue13-precise-bn}
recbench run --dataset filmtrust --models opeci --set opeci.epochs=5 --set opeci.precise_bn_batches=0 \
  --validation --early-stopping 2 --seeds 0 --out "$OUT" --threads 1
for n in 0 50; do
  recbench run --dataset synthetic --models opeci --set opeci.precise_bn_batches=$n --validation \
    --seeds 0,1,2,3,4 --out "$OUT" --threads 1
done

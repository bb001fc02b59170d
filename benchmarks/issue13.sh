#!/usr/bin/env bash
# The long runs of issue 13 (tuning on validation, then converged runs), as two queues that each
# use one core. Every step is resumable: tuning trials and runs are result records (finished ones
# are skipped), and a fit killed half way resumes from its last per-epoch checkpoint. Run again
# in a later session to go on where it stopped:
#
#   mkdir -p runs && nohup bash benchmarks/issue13.sh opeci > runs/issue13-opeci.log 2>&1 &
#   nohup bash benchmarks/issue13.sh rest  > runs/issue13-rest.log 2>&1 &
#
# Before the session stops: `bash benchmarks/park_checkpoints.sh park` and commit `checkpoints/`
# (the per-epoch checkpoints of unfinished fits; this script restores them when it starts).
#
# Reductions (stated in results/README.md beside the numbers): tuning trials are capped at 5
# epochs for the OPECI and CADNCF families and 10 for DMF (each model's default otherwise), with
# early stopping (patience 2) on the validation item inside each trial; every model gets the same
# number of trials (search_spaces.toml: its learning rates, 5 each). Converged runs: the tuned config, early stopping with
# patience 3 on validation NDCG@10, a cap of 30 epochs, 3 seeds, both protocols; their finished
# checkpoints stay under OUT/.checkpoints for `recbench diagnose --checkpoint` (not parked: they
# have records).
set -euo pipefail
cd "$(dirname "$0")/.."
queue=${1:?usage: issue13.sh opeci|rest}
OUT=${OUT:-results}
DATASETS=${DATASETS:-filmtrust ml-100k}
common=(--out "$OUT" --threads 1)
OUT="$OUT" bash benchmarks/park_checkpoints.sh restore  # unfinished fits of earlier sessions resume

tune() {  # dataset model epochs-cap
  local extra=()
  [ -n "$3" ] && extra=(--set "$2.epochs=$3")
  recbench tune --dataset "$1" --model "$2" "${extra[@]}" --early-stopping 2 "${common[@]}"
}

converge() {  # dataset models... (SEEDS: the model seeds, in the order they are run)
  local ds=$1; shift
  local sets=()
  for m in "$@"; do sets+=(--set "$m.epochs=30"); done
  recbench run --tuned --dataset "$ds" --models "$(IFS=,; echo "$*")" "${sets[@]}" --validation \
    --early-stopping 3 --seeds "${SEEDS:-0,1,2}" --protocol both --keep-checkpoints "${common[@]}"
}

baselines() {  # dataset: the other baselines on the same split, tuned (BPR: implicit's iterations)
  recbench run --tuned --dataset "$1" --models itempop,bpr,dmf,cml --set dmf.epochs=30 --validation \
    --early-stopping 3 --seeds 0,1,2 --protocol both "${common[@]}"
}

grouped() {  # issue 17: the grouped batch order beside the tuning trial at the default lr (validation)
  recbench run --dataset "$1" --models opeci --set opeci.epochs=5 --set opeci.batch_order=grouped --validation \
    --early-stopping 2 --seeds 0 --threads 1 --out "$OUT/issue17-grouped"
}

case "$queue" in
  opeci)  # ml-100k first: the acceptance asks whether each reading learns there
    tune filmtrust opeci 5
    grouped filmtrust
    tune ml-100k opeci 5
    grouped ml-100k
    converge ml-100k opeci
    for ds in $DATASETS; do converge "$ds" opeci; done
    # then help the other queue with the residual reading, its seeds in reverse order: a cell
    # the other process is fitting is locked (this one waits for its record, then skips it)
    for ds in filmtrust ml-100k; do
      if [ -e "$OUT/tuned/$ds/opeci-res.json" ]; then SEEDS=2,1,0 converge "$ds" opeci-res; fi
    done
    ;;
  rest)  # the baselines and CADNCF, then the residual reading (this queue's core frees up first)
    for ds in $DATASETS; do
      tune "$ds" cadncf 5
      tune "$ds" outer-mlp 5
      tune "$ds" ncf ""
      tune "$ds" cml ""
      tune "$ds" bpr ""
      tune "$ds" dmf 10
    done
    for ds in $DATASETS; do converge "$ds" cadncf outer-mlp ncf; done
    for ds in $DATASETS; do baselines "$ds"; done
    tune filmtrust opeci-res 5
    tune ml-100k opeci-res 5
    converge ml-100k opeci-res
    for ds in $DATASETS; do converge "$ds" opeci-res; done
    ;;
  *) echo "unknown queue $queue (opeci or rest)" >&2; exit 2 ;;
esac

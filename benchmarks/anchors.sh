#!/usr/bin/env bash
# recbench side by side with RecBole 1.2.1 and implicit on ml-100k: same machine, same session,
# interleaved (anchor, ours / ours, anchor alternating by round, so drift affects both sides),
# same thread count, same batch size (256) and negative ratio (1, RecBole's default) for the
# neural models, and the same architecture sizes as RecBole's configuration:
#   NeuMF  vs ncf  --set ncf.embedding_size=64 ncf.mlp_layers=128,128,64 (RecBole: mf 64, mlp 64,
#                    hidden [128, 64]; RecBole also has dropout 0.1 in the MLP, we have none)
#   DMF    vs dmf  --set dmf.hidden=64,64 dmf.embedding_size=64 (RecBole: 64 → [64, 64])
#   implicit BPR (64 factors, 100 iterations) vs bpr (the adapter over implicit, same settings)
# recbench runs the neural models with --validation so it trains on exactly RecBole's training
# pairs (per user: latest = test, second latest = validation, the rest = train: 98,114 pairs);
# BPR without (implicit's script: latest = test, the rest = train).
#
# This is a script, not project code: RecBole lives in its own virtual environment
# (../shared/anchors/README.md) and is never a dependency of recbench.
#
#   benchmarks/anchors.sh                      # 3 rounds, 20 epochs, 1 thread each side
#   ROUNDS=5 EPOCHS=5 THREADS=1 benchmarks/anchors.sh
#
# Environment (all optional):
#   ROUNDS (3), EPOCHS (20), THREADS (1: the same torch/implicit thread count on both sides)
#   PAIRS   which comparisons, any of "ncf dmf bpr" (default all three)
#   ANCHORS (../shared/anchors), DATA (../shared/data/ml-100k), APY (/tmp/anchors-venv/bin/python)
#   PY      recbench's interpreter (.venv/bin/python), RECBENCH_HOME (/tmp/rb-home)
#   OUT     output folder (results/bench/anchors-<UTC time>)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
EPOCHS=${EPOCHS:-20}
THREADS=${THREADS:-1}
PAIRS=${PAIRS:-ncf dmf bpr}
ANCHORS=${ANCHORS:-$ROOT/../shared/anchors}
DATA=${DATA:-$ROOT/../shared/data/ml-100k}
APY=${APY:-/tmp/anchors-venv/bin/python}
PY=${PY:-$ROOT/.venv/bin/python}
export RECBENCH_HOME=${RECBENCH_HOME:-/tmp/rb-home}
OUT=${OUT:-$ROOT/results/bench/anchors-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
LOG=$OUT/log.txt
LOADS=$OUT/raw/load.tsv
: > "$LOG"
printf 'time\tround\tstep\tload1\tload5\tload15\n' > "$LOADS"
say() { echo "[anchors $(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
load() { read -r l1 l5 l15 _ < /proc/loadavg; printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%H:%M:%S)" "$1" "$2" "$l1" "$l5" "$l15" >> "$LOADS"; }

[[ -x $APY ]] || { echo "anchors.sh: $APY missing; set up the anchors venv (see $ANCHORS/README.md)" >&2; exit 2; }
[[ -f $DATA/u.data ]] || { echo "anchors.sh: $DATA/u.data missing" >&2; exit 2; }
say "uptime: $(uptime)"
say "recbench at $(git -C "$ROOT" rev-parse --short HEAD); modified: $(git -C "$ROOT" status --porcelain --untracked-files=no | awk '{print $2}' | tr '\n' ' ')"
say "rounds $ROUNDS, epochs $EPOCHS, threads $THREADS, pairs: $PAIRS; RECBENCH_HOME=$RECBENCH_HOME"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

# RecBole's atomic file (exact dense time ranks), and recbench's cached ml-100k
"$APY" "$ANCHORS/convert_ml100k.py" --time-rank "$DATA/u.data" "$W/data/ml100k" >> "$LOG" 2>&1
"$PY" -m recbench.cli fetch ml-100k --from "$DATA" >> "$LOG" 2>&1

NCF_SET=(--set ncf.n_negatives=1 --set ncf.batch_size=256 --set ncf.embedding_size=64 --set ncf.mlp_layers=128,128,64)
DMF_SET=(--set dmf.n_negatives=1 --set dmf.batch_size=256 --set dmf.hidden=64,64 --set dmf.embedding_size=64)
BPR_SET=(--set bpr.threads="$THREADS" --set bpr.embedding_size=64)

anchor() {  # anchor PAIR ROUND
  local r=$2
  case $1 in
    ncf|dmf)
      local m; m=$([[ $1 == ncf ]] && echo NeuMF || echo DMF)
      nice -n 0 "$APY" "$ANCHORS/recbole_ml100k.py" --model "$m" --epochs "$EPOCHS" --threads "$THREADS" \
        --data-path "$W/data" --workdir "$W/work-$m-$r" --out "$OUT/raw/recbole-$m-r$r.json" >> "$LOG" 2>&1 ;;
    bpr)
      nice -n 0 "$APY" "$ANCHORS/implicit_ml100k.py" "$DATA/u.data" --seed 0 --threads "$THREADS" \
        > "$OUT/raw/implicit-r$r.jsonl" 2>> "$LOG" ;;
  esac
}

ours() {  # ours PAIR ROUND
  local r=$2 args=()
  case $1 in
    ncf) args=(--models ncf --epochs "$EPOCHS" --validation "${NCF_SET[@]}") ;;
    dmf) args=(--models dmf --epochs "$EPOCHS" --validation "${DMF_SET[@]}") ;;
    bpr) args=(--models bpr --epochs 0 "${BPR_SET[@]}") ;;
  esac
  nice -n 0 "$PY" -m recbench.cli bench --dataset ml-100k "${args[@]}" --repeats 1 --threads "$THREADS" \
    --protocol both --out "$OUT/raw/recbench-$1-r$r" >> "$LOG" 2>&1
}

for r in $(seq 1 "$ROUNDS"); do
  for p in $PAIRS; do
    if (( r % 2 )); then order=(anchor ours); else order=(ours anchor); fi
    for side in "${order[@]}"; do
      load "$r" "$side-$p-start"
      t0=$SECONDS
      "$side" "$p" "$r" || say "round $r: $side $p FAILED (see the log)"
      say "round $r: $side $p done in $((SECONDS - t0)) s (load $(cut -d' ' -f1-3 /proc/loadavg))"
      load "$r" "$side-$p-end"
    done
  done
done
say "uptime: $(uptime)"
"$PY" "$ROOT/benchmarks/anchors_summary.py" "$OUT" | tee "$OUT/summary.md"

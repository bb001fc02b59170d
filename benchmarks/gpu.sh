#!/usr/bin/env bash
# recbench on a GPU: every registered model, one epoch, sampled + full-ranking evaluation, on
# ML-1M-sized data, `--device cuda`. Results (one merged JSON + markdown, the data timing and
# the log) are written under $OUT.
#
#   benchmarks/gpu.sh              # on the GPU machine (the device tool sets $OUT)
#   benchmarks/gpu.sh --dry-run    # anywhere: tiny generated data, --device cpu (syntax/flow check)
#
# Installs nothing: the repository is put on PYTHONPATH and run with `python3 -m recbench.cli`.
# A Python dependency the GPU image lacks and recbench imports eagerly (platformdirs, only used
# for the default cache folder, which --data-dir makes unnecessary) gets a 3-line stand-in in a
# temporary folder. implicit is absent there too: BPR is then recorded as failed, the rest goes on.
#
# Environment (all optional):
#   PYTHON          interpreter (default python3)
#   OUT             output folder (default results/bench/gpu-<UTC time>)
#   DEVICE          cuda (default), cpu in --dry-run
#   MODELS          comma-separated models (default: every registered one, cheap ones first)
#   ML1M_PAIRS      the shared pairs.parquet (default: shared/data/ml-1m-pairs/pairs.parquet
#                   inside or beside the checkout; missing: an ML-1M-sized set is generated)
#   MODEL_TIMEOUT   seconds per model (default 120; a model that runs longer is recorded as
#                   timed out in the log and the others still run)
#   BUDGET          seconds for the whole script (default 480, inside the device tool's 600 s per
#                   command): each model gets min(MODEL_TIMEOUT, what is left); models that no
#                   longer fit (under 30 s left) are skipped and named in the log. The cheap
#                   models and OPECI run first, the OPECI variants last.
#   SETS            space-separated config overrides MODEL.PARAM=VALUE, each passed (as --set)
#                   to its own model's run only, e.g. "opeci.batch_size=1024 dmf.batch_size=1024"
#   BENCH_ARGS      extra arguments for every `recbench bench` run
#   FORCE_SHIM=1    use the platformdirs stand-in even where the package exists (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/results/bench/gpu-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
LOG=$OUT/gpu-log.txt
: > "$LOG"
say() { echo "[gpu.sh $(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [[ $DRY == 1 ]]; then
  DEVICE=${DEVICE:-cpu}
  MODEL_TIMEOUT=${MODEL_TIMEOUT:-120}
  SIZE=(--users 40 --items 160 --ratings 1200)
  PEAK_N=256
else
  DEVICE=${DEVICE:-cuda}
  MODEL_TIMEOUT=${MODEL_TIMEOUT:-120}
  SIZE=()
  PEAK_N=0
fi

# --- make recbench importable without installing anything
SHIM=$W/shim
mkdir -p "$SHIM"
if [[ ${FORCE_SHIM:-0} == 1 ]] || ! "$PY" -c "import platformdirs" 2>/dev/null; then
  say "platformdirs missing: using a stand-in (only the default cache folder needs it; we pass --data-dir)"
  printf '%s\n' 'import os' \
    'def user_cache_dir(appname=None, *args, **kwargs):' \
    '    return os.path.join(os.path.expanduser("~"), ".cache", appname or "")' > "$SHIM/platformdirs.py"
fi
export PYTHONPATH="$SHIM:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG" >&2
import importlib, platform
mods = ["torch", "numpy", "scipy", "pyarrow", "typer", "rich", "filelock", "implicit", "platformdirs"]
have = {}
for m in mods:
    try:
        have[m] = getattr(importlib.import_module(m), "__version__", "?")
    except Exception as e:  # noqa: BLE001
        have[m] = f"MISSING ({type(e).__name__})"
import torch
print("python", platform.python_version(), have)
print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
if [[ $DEVICE == cuda* ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "no CUDA device visible to torch; stopping (use --dry-run for a CPU check)"
  exit 3
fi

# --- ML-1M-sized data: the shared pairs when present, else generated
PAIRS=${ML1M_PAIRS:-}
for cand in "$ROOT/shared/data/ml-1m-pairs/pairs.parquet" "$ROOT/../shared/data/ml-1m-pairs/pairs.parquet"; do
  [[ -z $PAIRS && -f $cand && $DRY == 0 ]] && PAIRS=$cand
done
HOME_DIR=$W/home
mkdir -p "$W/src"
say "building the ratings file (${PAIRS:-generated})"
"$PY" -m recbench.bench make-ml1m "$W/src/ratings.dat" ${PAIRS:+--pairs "$PAIRS"} "${SIZE[@]}" | tee "$OUT/data-source.json" >&2
"$PY" -m recbench.bench data "$W/src/ratings.dat" --repeats 1 --json "$OUT/data-timing.json" > /dev/null
say "parse + preprocess + split: $("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d['total_s'], 2), 's')" "$OUT/data-timing.json")"
# a stand-in for ML-1M (pairs with generated ratings, or a small generated file): accepted as such
"$PY" -W ignore -m recbench.cli fetch ml-1m --from "$W/src/ratings.dat" --data-dir "$HOME_DIR" --allow-mismatch 2>&1 | tee -a "$LOG" >&2

# --- every model, one process each (a slow or failing model never costs the others' results)
if [[ -z ${MODELS:-} ]]; then
  MODELS=$("$PY" - <<'EOF'
from recbench.registry import MODELS
cheap = ["itempop", "bpr", "ncf", "dmf", "cml", "cadncf", "opeci"]
names = [m for m in cheap if m in MODELS] + [m for m in MODELS if m not in cheap]
print(",".join(names))
EOF
)
fi
say "models: $MODELS (device $DEVICE, timeout ${MODEL_TIMEOUT}s each)"
mkdir -p "$W/parts"
PEAK_ARGS=()
[[ $PEAK_N != 0 ]] && PEAK_ARGS=(--matmul-n "$PEAK_N")
status=0
IFS=, read -r -a LIST <<< "$MODELS"
k=0
for m in "${LIST[@]}"; do
  k=$((k + 1))
  part=$W/parts/$(printf %02d $k)-$m
  sets=()
  for kv in ${SETS:-}; do
    [[ $kv == "$m".* ]] && sets+=(--set "$kv")
  done
  left=$(( ${BUDGET:-480} - SECONDS ))
  if (( left < 30 )); then
    say "$m: skipped (only ${left}s of the ${BUDGET:-480}s budget left)"
    status=1
    continue
  fi
  tmo=$(( left < MODEL_TIMEOUT ? left : MODEL_TIMEOUT ))
  say "bench $m ${sets[*]} (timeout ${tmo}s)"
  set +e
  # shellcheck disable=SC2086  # BENCH_ARGS is a word list on purpose
  timeout --signal=TERM --kill-after=10 "$tmo" "$PY" -m recbench.cli bench --dataset ml-1m --models "$m" \
    --epochs 1 --repeats 1 --device "$DEVICE" --protocol both --out "$part" --data-dir "$HOME_DIR" \
    "${PEAK_ARGS[@]}" "${sets[@]}" ${BENCH_ARGS:-} >> "$LOG" 2>&1
  rc=$?
  set -e
  case $rc in
    0) say "$m: ok" ;;
    124|137) say "$m: timed out after ${tmo}s"; status=1 ;;
    *) say "$m: failed (exit $rc; see the log)"; status=1 ;;
  esac
  # merge after every model, so a run cut short still leaves every finished model under $OUT
  parts=("$W"/parts/*/*.json)
  if [[ -e ${parts[0]} ]]; then
    "$PY" -m recbench.bench merge "$OUT/ml-1m-$DEVICE.json" "${parts[@]}" >> "$LOG" 2>&1 || true
  fi
done
[[ -f $OUT/ml-1m-$DEVICE.md ]] && cat "$OUT/ml-1m-$DEVICE.md"
say "done (status $status); files: $(ls "$OUT" | tr '\n' ' ')"
exit $status

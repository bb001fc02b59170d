#!/usr/bin/env bash
# Carry the per-epoch checkpoints of unfinished long fits from one session to the next.
#
# A session's checkout is new: what git ignores (OUT/.checkpoints) is gone with it, so a fit longer
# than a session (an OPECI fit on ml-100k: 15-30 min per epoch on this 2-core machine, up to 30
# epochs) would restart at epoch 1 every session. `park` copies the checkpoints of cells that have
# no record yet into the tracked folder `checkpoints/` (same layout: dataset/model/seed<s>-<key>.ckpt)
# and drops the parked ones whose record has landed (a parked one is kept until then, even when this
# session did not restore it); commit that folder before the session stops.
# `restore` (run by benchmarks/issue13.sh before it starts) copies them back, so the rerun of the
# same cell resumes at its last epoch. Checkpoints are checksummed: a damaged one is ignored by the
# runner with a warning and the fit restarts, nothing else is lost.
#
#   bash benchmarks/park_checkpoints.sh park      # before stopping; then git add -A checkpoints
#   bash benchmarks/park_checkpoints.sh restore   # at the start of a session
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
PARK=${PARK:-checkpoints}
# the results folders of issue13.sh, relative to OUT: the main one and the grouped-order check's
ROOTS=${ROOTS:-". issue17-grouped"}

has_record() {  # a results folder, a checkpoint path relative to its checkpoint root
  [ -e "$1/records/${2%.ckpt}.json" ]
}

cmd=${1:?usage: park_checkpoints.sh park|restore}
[ "$cmd" = park ] || [ "$cmd" = restore ] || { echo "unknown command $cmd (park or restore)" >&2; exit 2; }
for root in $ROOTS; do
  out="$OUT/$root" live="$OUT/$root/.checkpoints" park="$PARK/$root"
  if [ "$cmd" = park ]; then
    if [ -d "$park" ]; then
      (cd "$park" && find . -maxdepth 3 -name '*.ckpt' -printf '%P\n') | while read -r rel; do
        if has_record "$out" "$rel"; then rm -f "$park/$rel"; echo "dropped $root/$rel"; fi
      done
    fi
    [ -d "$live" ] || continue
    (cd "$live" && find . -name '*.ckpt' -printf '%P\n') | while read -r rel; do
      has_record "$out" "$rel" && continue
      mkdir -p "$park/$(dirname "$rel")"
      cp -p "$live/$rel" "$park/$rel"
      echo "parked $root/$rel ($(du -h "$park/$rel" | cut -f1))"
    done
  else
    [ -d "$park" ] || continue
    (cd "$park" && find . -maxdepth 3 -name '*.ckpt' -printf '%P\n') | while read -r rel; do
      has_record "$out" "$rel" && continue
      [ -e "$live/$rel" ] && continue  # this session's own checkpoint is newer
      mkdir -p "$live/$(dirname "$rel")"
      cp -p "$park/$rel" "$live/$rel"
      echo "restored $root/$rel"
    done
  fi
done
[ -d "$PARK" ] && find "$PARK" -mindepth 1 -type d -empty -delete
exit 0

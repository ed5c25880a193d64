#!/usr/bin/env bash
# #23 item 4 on the device (device-run.sh paper-model, after its build): configs/paper.yaml's
# network, Sli2Vol (self-supervised: no label is read), trained on every CT volume in
# data/ct.yaml (make gpu-bundle GPU_DATA=1 puts the shared real CT there) for as many epochs
# as PAPER_SECONDS (300) allow. One epoch is timed first in a throw-away run; the real run is
# then a plain run of that many epochs (the poly schedule depends on the total, so a resumed
# probe would not be the same run). Its model.pt, config.yaml, run.json and metrics.jsonl come
# back under $OUT/paper-ct for the CPU evaluation (bench/results.sh with PAPER_RUN).
# Dry run on a CPU: DEV=cpu PAPER_CONFIG=configs/cpu-real.yaml PAPER_SECONDS=60 DATA=... OUT=...
set -uo pipefail
S=${S:-bin/sli2vol}
DEV=${DEV:-cuda}
CFG=${PAPER_CONFIG:-configs/paper.yaml}
DATA=${DATA:-data/ct.yaml}
BUDGET=${PAPER_SECONDS:-300}
SEED=${PAPER_SEED:-0}
W=${PAPER_WORK:-build/paper}
OUT=${OUT:?OUT: where the run comes back}
MAX_EPOCHS=${PAPER_MAX_EPOCHS:-100}
rm -rf "$W" && mkdir -p "$W" "$OUT/paper-ct"
t0=$(date +%s.%N)
$S train --config "$CFG" --device "$DEV" --seed "$SEED" --mode sli2vol --data "$DATA" --out "$W/probe" --epochs 1 2>&1 | tail -n 3
t1=$(date +%s.%N)
if [ ! -f "$W/probe/model.pt" ]; then
  echo "paper-model: the one-epoch probe failed (above); no run" >&2
  exit 1
fi
# epochs that fit the budget, at most MAX_EPOCHS: a probe that was quick for a wrong reason
# must not book the machine for hours
epochs=$(awk -v b="$BUDGET" -v e="$t1" -v s="$t0" -v m="$MAX_EPOCHS" 'BEGIN { n = int(b / (e - s)); n = n < 1 ? 1 : n; print (n > m ? m : n) }')
echo "paper-model: one epoch took $(awk -v e="$t1" -v s="$t0" 'BEGIN{printf "%.1f", e-s}') s (start included): $epochs epochs in ${BUDGET} s"
# the budget twice over, then the run is stopped (SIGINT: it checkpoints) rather than overrun
timeout -s INT $((2 * BUDGET + 60)) $S train --config "$CFG" --device "$DEV" --seed "$SEED" --mode sli2vol \
  --data "$DATA" --out "$W/paper-ct" --epochs "$epochs" 2>&1 | tail -n 2
t2=$(date +%s.%N)
echo "paper-model: $epochs epochs in $(awk -v e="$t2" -v s="$t1" 'BEGIN{printf "%.1f", e-s}') s"
status=0
for f in model.pt config.yaml run.json metrics.jsonl; do
  cp "$W/paper-ct/$f" "$OUT/paper-ct/" || { echo "paper-model: the run has no $f" >&2; status=1; }
done
exit $status

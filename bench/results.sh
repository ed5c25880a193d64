#!/usr/bin/env bash
# The quality table, docs/results.md: every section of it is written by `sli2vol evaluate
# --results`, never by hand. This script is the recipe (make results runs it).
#
#   CT (../shared/data/real: ts_aorta_001, ts_pulmonary_001, ts_abdomen_001): train on two,
#   test on the third, rotating. MRI (BraTS 2018): train on T1 of brats_000–004, test on FLAIR
#   of brats_005–006 (another sequence and other patients).
#
# Per fold: the pipeline (Sli2Vol → pseudo-labels → UNETR++ refinement → Sli2Vol+ on the
# refined PLs), Sli2Vol+ also trained on the raw PLs, then one evaluation of the copy and
# untrained-affinity baselines and the three runs, each plain, adapted, verified, and
# adapted+verified (ADAPT_STEPS, default 25: at most about twice the plain time per case on
# BraTS, docs/results/adapt-curve.md; batch norm and the weight mix as infer.adapt_norm's and
# infer.adapt_mix's defaults, auto and 0.3: docs/results/adapt-mix.md).
# configs/cpu-real.yaml (two cores), seed 0. Steps whose output is complete
# are skipped, so an interrupted run continues. Usage: bench/results.sh [train|evaluate|all]
# [FOLD...]; WORK (default build/results) holds every run, RESULTS (default docs/results.md).
# PAPER_RUN=DIR adds a run to every CT fold's evaluation: the paper-size Sli2Vol trained on a GPU
# on all the shared CT (third_party/gpu/paper-model.sh; self-supervised, so it has seen the
# test volume's images as an adapted model has, but no label).
set -euo pipefail
# PAPER_RUN as given, made absolute before the cd below
[ -z "${PAPER_RUN:-}" ] || PAPER_RUN=$(cd "$PAPER_RUN" && pwd)
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/sli2vol}
CFG=${CFG:-configs/cpu-real.yaml}
WORK=${WORK:-build/results}
RESULTS=${RESULTS:-docs/results.md}
REAL=${REAL:-$(cd .. && pwd)/shared/data/real}
ADAPT_STEPS=${ADAPT_STEPS:-25}
PHASE=${1:-all}
shift || true
FOLDS=("$@")
case $PHASE in
train | evaluate | all) ;;
*) echo "results: unknown phase $PHASE (train, evaluate, all)" >&2; exit 2 ;;
esac

if [ ! -d "$REAL" ]; then
	echo "results: $REAL is absent: the real volumes are needed" >&2
	exit 1
fi
# shellcheck source=bench/folds.sh
. bench/folds.sh
[ ${#FOLDS[@]} -gt 0 ] || FOLDS=("${ALL_FOLDS[@]}")

train_fold() {
	local w=$WORK/$RUNS
	env "${FOLD_ENV[@]}" "$BIN" pipeline --config "$CFG" --data "$TRAIN" --out "$w"
	if [ ! -f "$w/sli2vol+raw-pl/model.pt" ]; then
		local resume=()
		[ -d "$w/sli2vol+raw-pl" ] && resume=(--resume)
		"$BIN" train --config "$CFG" --mode sli2vol+ --data "$TRAIN" --pseudo "$w/pseudo" \
			--out "$w/sli2vol+raw-pl" "${resume[@]}"
	fi
}

evaluate_fold() {
	local w=$WORK/$RUNS extra=()
	if [ -n "${PAPER_RUN:-}" ] && [ "$RUNS" != brats ]; then
		extra=(--model "$PAPER_RUN")
	fi
	"$BIN" evaluate --config "$CFG" --data "$TEST" --out "$WORK/$1/report" --force \
		--model "$w/sli2vol" --model "$w/sli2vol+raw-pl" --model "$w/sli2vol+" \
		"${extra[@]}" \
		--variants plain,adapted,verified,adapted+verified --adapt-steps "$ADAPT_STEPS" "${FLAGS[@]}" \
		--results "$RESULTS" --results-title "$TITLE"
}

for f in "${FOLDS[@]}"; do
	fold "$f" || exit 2
	echo "results: $f ($PHASE)"
	case $PHASE in
	train) train_fold "$f" ;;
	evaluate) evaluate_fold "$f" ;;
	all) # two statements: set -e does not reach into a function called left of &&
		train_fold "$f"
		evaluate_fold "$f" ;;
	esac
done

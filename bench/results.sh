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
# adapted+verified. configs/cpu-real.yaml (two cores), seed 0. Steps whose output is complete
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
ADAPT_STEPS=${ADAPT_STEPS:-50}
PHASE=${1:-all}
shift || true
FOLDS=("$@")
[ ${#FOLDS[@]} -gt 0 ] || FOLDS=(ct-abdomen ct-aorta ct-pulmonary brats)
case $PHASE in
train | evaluate | all) ;;
*) echo "results: unknown phase $PHASE (train, evaluate, all)" >&2; exit 2 ;;
esac

if [ ! -d "$REAL" ]; then
	echo "results: $REAL is absent: the real volumes are needed" >&2
	exit 1
fi
CT=$REAL/ts-vessels-ct
AB=$REAL/ts-abdomen-ct
BR=$REAL/brats2018-mri

# manifest NAME SPLIT:IMAGE:LABEL... writes a dataset manifest and prints its path.
manifest() {
	local f=$WORK/manifests/$1.yaml
	shift
	mkdir -p "$(dirname "$f")"
	{
		echo "name: $(basename "$f" .yaml)"
		echo "cases:"
		for c in "$@"; do
			IFS=: read -r split img lab <<<"$c"
			echo "  - {image: \"$img\", label: \"$lab\", split: $split}"
		done
	} >"$f.tmp" && mv "$f.tmp" "$f"
	echo "$f"
}

ct() { echo "$1:$CT/imagesTr/$2.nii.gz:$CT/labelsTr/$2.nii.gz"; }
abd() { echo "$1:$AB/imagesTr/ts_abdomen_001.nii.gz:$AB/labelsTr/ts_abdomen_001.nii.gz"; }

# fold FOLD sets TRAIN, TEST, TITLE and FLAGS (inference settings) for one fold.
fold() {
	FLAGS=() FOLD_ENV=()
	case $1 in
	ct-abdomen)
		TRAIN=$(manifest ct-abdomen-train "$(ct train ts_aorta_001)" "$(ct train ts_pulmonary_001)")
		TEST=$AB # its labels.json names the 41 structures
		TITLE="CT: test ts_abdomen_001 (41 structures, 3 mm), trained on ts_aorta_001 + ts_pulmonary_001" ;;
	ct-aorta)
		TRAIN=$(manifest ct-aorta-train "$(ct train ts_pulmonary_001)" "$(abd train)")
		TEST=$(manifest ct-aorta-test "$(ct test ts_aorta_001)")
		TITLE="CT: test ts_aorta_001 (aortic true and false lumen, 1.5 mm), trained on ts_pulmonary_001 + ts_abdomen_001" ;;
	ct-pulmonary)
		TRAIN=$(manifest ct-pulmonary-train "$(ct train ts_aorta_001)" "$(abd train)")
		TEST=$(manifest ct-pulmonary-test "$(ct test ts_pulmonary_001)")
		TITLE="CT: test ts_pulmonary_001 (pulmonary artery, 1.5 mm), trained on ts_aorta_001 + ts_abdomen_001" ;;
	brats)
		local tr=() te=()
		for i in 0 1 2 3 4; do tr+=("train:$BR/imagesTr_t1/brats_00$i.nii.gz:$BR/labelsTr/brats_00$i.nii.gz"); done
		for i in 5 6; do te+=("test:$BR/imagesTr/brats_00$i.nii.gz:$BR/labelsTr/brats_00$i.nii.gz"); done
		TRAIN=$(manifest brats-train "${tr[@]}")
		TEST=$(manifest brats-test "${te[@]}")
		# 240-px slices trained at ~110 px (resize_range): propagate at the scale trained on.
		FLAGS=(--spacing training)
		# UNETR++'s refinement predicts each 240×240×155 volume by sliding windows: without the
		# 8 mirrorings, 2 minutes a volume on two cores instead of 16.
		FOLD_ENV=(SLI2VOL_UNETR_TEST_MIRROR=false)
		TITLE="MRI: BraTS 2018 whole tumour, test FLAIR of brats_005–006, trained on T1 of brats_000–004" ;;
	*)
		echo "results: unknown fold $1 (ct-abdomen, ct-aorta, ct-pulmonary, brats)" >&2
		exit 2 ;;
	esac
}

train_fold() {
	local w=$WORK/$1
	env "${FOLD_ENV[@]}" "$BIN" pipeline --config "$CFG" --data "$TRAIN" --out "$w"
	if [ ! -f "$w/sli2vol+raw-pl/model.pt" ]; then
		local resume=()
		[ -d "$w/sli2vol+raw-pl" ] && resume=(--resume)
		"$BIN" train --config "$CFG" --mode sli2vol+ --data "$TRAIN" --pseudo "$w/pseudo" \
			--out "$w/sli2vol+raw-pl" "${resume[@]}"
	fi
}

evaluate_fold() {
	local w=$WORK/$1 extra=()
	if [ -n "${PAPER_RUN:-}" ] && [ "$1" != brats ]; then
		extra=(--model "$PAPER_RUN")
	fi
	"$BIN" evaluate --config "$CFG" --data "$TEST" --out "$w/report" --force \
		--model "$w/sli2vol" --model "$w/sli2vol+raw-pl" --model "$w/sli2vol+" \
		"${extra[@]}" \
		--variants plain,adapted,verified,adapted+verified --adapt-steps "$ADAPT_STEPS" "${FLAGS[@]}" \
		--results "$RESULTS" --results-title "$TITLE"
}

for f in "${FOLDS[@]}"; do
	fold "$f"
	echo "results: $f ($PHASE)"
	case $PHASE in
	train) train_fold "$f" ;;
	evaluate) evaluate_fold "$f" ;;
	all) # two statements: set -e does not reach into a function called left of &&
		train_fold "$f"
		evaluate_fold "$f" ;;
	esac
done

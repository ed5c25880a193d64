# The folds of the quality table, sourced by bench/results.sh and bench/adapt-curve.sh (both
# read the same train/test split). Needs REAL (../shared/data/real) and WORK (manifests go to
# $WORK/manifests).
#
#   CT (ts-vessels-ct + ts-abdomen-ct): train on two of ts_aorta_001, ts_pulmonary_001,
#   ts_abdomen_001, test on the third, rotating, at native spacing. MRI (BraTS 2018): train on
#   T1 of brats_000–004, test on FLAIR of brats_005–006 (another sequence, other patients).

ALL_FOLDS=(ct-abdomen ct-aorta ct-pulmonary brats)
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

# fold FOLD sets TRAIN, TEST, TITLE, FLAGS (inference settings), FOLD_ENV, and RUNS: the fold
# whose trained runs it evaluates (itself, but for brats-flair-all).
fold() {
	FLAGS=() FOLD_ENV=() RUNS=$1
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
	brats-flair-all)
		# brats' runs on the FLAIR of all seven patients: five are those whose T1 trained the
		# runs (no label is used in training), so not held out; more cases for the adaptation
		# curve, whose two held-out cases swing by ±5 points from one setting to the next.
		fold brats
		RUNS=brats
		local te=()
		for i in 0 1 2 3 4 5 6; do te+=("test:$BR/imagesTr/brats_00$i.nii.gz:$BR/labelsTr/brats_00$i.nii.gz"); done
		TEST=$(manifest brats-flair-all-test "${te[@]}")
		TITLE="MRI: BraTS 2018 whole tumour, FLAIR of brats_000–006 (000–004: T1 trained the runs), trained on T1 of brats_000–004" ;;
	*)
		echo "unknown fold $1 (${ALL_FOLDS[*]})" >&2
		return 2 ;;
	esac
}

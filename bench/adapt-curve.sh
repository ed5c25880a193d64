#!/usr/bin/env bash
# The adaptation curve: mean Dice and seconds per case against test-time adaptation steps,
# learning rates, what batch norm does meanwhile (--adapt-norm batch, frozen or volume), and
# the adapted weights' share afterwards (--adapt-mix: w·adapted + (1−w)·trained, WiSE-FT),
# per fold of the quality table (bench/folds.sh), for the runs bench/results.sh trained. Each
# point is one `sli2vol evaluate` (no baselines; plain at 0 steps unless the statistics are
# re-estimated, adapted otherwise); the points are gathered from their results.csv/times.csv into $WORK/FOLD/curve.csv
# and the table docs/results/adapt-curve.md. Points already evaluated are skipped.
#
#   bench/adapt-curve.sh [FOLD...]   CURVE_STEPS="0 10 25 50 100" CURVE_LRS="1e-3" CURVE_NORM="batch frozen volume auto"
#                                    CURVE_MIX="1 0.5"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/sli2vol}
CFG=${CFG:-configs/cpu-real.yaml}
WORK=${WORK:-build/results}
REAL=${REAL:-$(cd .. && pwd)/shared/data/real}
OUT=${CURVE_OUT:-docs/results/adapt-curve.md}
read -r -a STEPS <<<"${CURVE_STEPS:-0 10 25 50 100}"
read -r -a LRS <<<"${CURVE_LRS:-1e-3}"
read -r -a NORMS <<<"${CURVE_NORM:-batch}"
read -r -a MIXES <<<"${CURVE_MIX:-1}"
# shellcheck source=bench/folds.sh
. bench/folds.sh
FOLDS=("$@")
[ ${#FOLDS[@]} -gt 0 ] || FOLDS=("${ALL_FOLDS[@]}")

point() { # point FOLD STEPS LR NORM MIX: one evaluation, skipped when its report exists
	local w=$WORK/$RUNS name=s$2-lr$3 variant=adapted
	[ "$4" = batch ] || name+=-$4
	[ "$5" = 1 ] || name+=-mix$5
	local out=$WORK/$1/curve/$name
	if [ "$2" = 0 ] && [ "$4" != volume ]; then
		[ "$4" = batch ] && [ "$5" = 1 ] || return 0 # no steps: plain whatever the statistics
		variant=plain
	fi
	[ -f "$out/report.md" ] && return 0
	"$BIN" evaluate --config "$CFG" --data "$TEST" --out "$out" --baselines=false \
		--model "$w/sli2vol" --model "$w/sli2vol+raw-pl" --model "$w/sli2vol+" \
		--variants "$variant" --adapt-steps "$2" --adapt-lr "$3" --adapt-norm "$4" --adapt-mix "$5" "${FLAGS[@]}" >"$out.log" 2>&1 ||
		{ echo "adapt-curve: $1 $name failed, see $out.log" >&2; return 1; }
}

for f in "${FOLDS[@]}"; do
	fold "$f"
	[ -d "$WORK/$RUNS/sli2vol+" ] || { echo "adapt-curve: $WORK/$RUNS has no trained runs (bench/results.sh train $RUNS)" >&2; exit 1; }
	mkdir -p "$WORK/$f/curve"
	for norm in "${NORMS[@]}"; do
		for lr in "${LRS[@]}"; do
			for mix in "${MIXES[@]}"; do
				for s in "${STEPS[@]}"; do
					[ "$s" = 0 ] && [ "$lr" != "${LRS[0]}" ] && continue # no steps: the rate is moot
					echo "adapt-curve: $f, $s steps, lr $lr, batch norm $norm, mix $mix"
					point "$f" "$s" "$lr" "$norm" "$mix"
				done
			done
		done
	done
done

# Gather every fold that has points (earlier invocations' folds included) into one table.
python3 - "$WORK" "$OUT" "${ALL_FOLDS[@]}" brats-flair-all <<'PY'
import csv, os, re, sys, statistics as st
work, out, folds = sys.argv[1], sys.argv[2], sys.argv[3:]
sections = []
ABOUT = {
    "ct-abdomen": "Test ts_abdomen_001 (41 structures, one case), trained on ts_aorta_001 + ts_pulmonary_001.",
    "ct-aorta": "Test ts_aorta_001 (two structures), trained on ts_pulmonary_001 + ts_abdomen_001.",
    "ct-pulmonary": "Test ts_pulmonary_001 (one structure), trained on ts_aorta_001 + ts_abdomen_001.",
    "brats": "BraTS whole tumour, FLAIR of the two held-out patients (brats_005–006), trained on T1 of brats_000–004.",
    "brats-flair-all": "The brats runs on the FLAIR of all seven patients: brats_000–004 are those whose T1 "
                       "trained the runs (no label used), so not held out; more cases, less noise.",
}
for fold in folds:
    cdir = os.path.join(work, fold, "curve")
    if not os.path.isdir(cdir):
        continue
    points = {}  # (model, setting, steps) -> (dice, seconds)
    for name in sorted(os.listdir(cdir)):
        m = re.fullmatch(r"s(\d+)-lr(.+?)(?:-(frozen|volume|auto))?(?:-mix(.+))?", name)
        if not m or not os.path.isfile(os.path.join(cdir, name, "report.md")):
            continue
        steps, lr, norm, mix = int(m[1]), m[2], m[3], m[4]
        if steps == 0:
            setting = "statistics only" if norm == "volume" else "none"
        else:
            # mix before the statistics: the table keys on a setting ending "+ statistics"
            setting = f"lr {lr}" + (f", mix {mix}" if mix else "") + \
                {None: ", batch statistics", "frozen": ", statistics frozen", "volume": " + statistics", "auto": ", batch norm auto"}[norm]
        per = {}  # model -> structure -> [dice per case]
        with open(os.path.join(cdir, name, "results.csv")) as fh:
            for r in csv.DictReader(fh):
                model = r["method"].removesuffix(" (adapted)")
                per.setdefault(model, {}).setdefault(r["label"], []).append(float(r["dice"]))
        secs = {}
        with open(os.path.join(cdir, name, "times.csv")) as fh:
            for r in csv.DictReader(fh):
                if r["case"] != "mean":
                    secs.setdefault(r["method"].removesuffix(" (adapted)"), []).append(float(r["seconds"]))
        for model, structs in per.items():
            dice = st.mean(st.mean(v) for v in structs.values())  # the results table's mean
            points[(model, setting, steps)] = (100 * dice, st.mean(secs.get(model, [float("nan")])))
    if not points:
        continue
    with open(os.path.join(work, fold, "curve.csv"), "w") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "adaptation", "steps", "mean_dice", "seconds_per_case"])
        for (model, setting, steps), (d, s) in sorted(points.items()):
            w.writerow([model, setting, steps, f"{d:.2f}", f"{s:.2f}"])
    allsteps = sorted({k[2] for k in points} | {0})
    lines = [f"## {fold}", "", ABOUT.get(fold, ""), "", "| model | adaptation | " + " | ".join(f"{s} steps" for s in allsteps) + " |",
             "|---|---|" + "---|" * len(allsteps)]
    def cell(p):
        return "–" if p is None else f"{p[0]:.1f} ({p[1]:.0f} s)"
    for model in sorted({k[0] for k in points}):
        settings = sorted({k[1] for k in points if k[0] == model and k[2] > 0}, key=lambda x: (x.endswith("+ statistics"), x))
        plain, only = points.get((model, "none", 0)), points.get((model, "statistics only", 0))
        # The 0-steps column: the plain network, or the statistics alone on the "+ statistics" rows.
        rows = [("none", plain)] if plain and not any(not x.endswith("+ statistics") for x in settings) else []
        rows += [(x, only if x.endswith("+ statistics") else plain) for x in settings]
        if only and not any(x.endswith("+ statistics") for x in settings):
            rows.append(("statistics only", only))
        for setting, zero in rows:
            cells = [cell(zero if s == 0 else points.get((model, setting, s))) for s in allsteps]
            lines.append(f"| {model} | {setting} | " + " | ".join(cells) + " |")
    sections.append("\n".join(lines))
if sections:
    text = ("# Test-time adaptation: mean Dice ×100 (seconds per case) against adaptation steps\n\n"
            "<!-- Written by bench/adapt-curve.sh from `sli2vol evaluate` reports; edits here are lost. -->\n\n"
            "Same folds, runs and inference settings as docs/results.md (configs/cpu-real.yaml, seed 0, two cores). "
            "Rows: the learning rate and --adapt-norm (batch: batch norm as in training; statistics frozen: the "
            "trained ones, weights alone adapt; + statistics / statistics only: re-estimated on the test volume after "
            "the steps / alone, --adapt-norm volume; mix w: each weight w·adapted + (1−w)·trained after the steps, "
            "--adapt-mix). The 0-steps column is the plain network except on \"statistics "
            "only\" rows.\n\n"
            + "\n\n".join(sections) + "\n")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(out + ".tmp", out)
    print("adapt-curve:", out)
PY

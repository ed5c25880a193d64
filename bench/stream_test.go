package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSli2vol stands in for bin/sli2vol: phantom writes dataset.json, prepare succeeds, and
// train appends a metrics line every 20 ms until SIGTERM, which it answers with status 143
// as the trainer does. The fake bench binary answers train with a stepper's JSON line.
const fakeSli2vol = `#!/bin/sh
cmd=$1; shift
out=""; while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
case $cmd in
phantom) mkdir -p "$out" && echo '{}' > "$out/dataset.json" ;;
prepare) mkdir -p "$out" ;;
train)
  mkdir -p "$out"; trap 'exit 143' TERM
  while :; do echo '{"step": 1, "samples_per_s": 10}' >> "$out/metrics.jsonl"; sleep 0.02; done ;;
esac
`

const fakeBench = `#!/bin/sh
[ "$1" = train ] && echo '{"first_loss": 1, "samples_per_s": 8, "peak_rss_mib": 1}'
exit 0
`

// The streaming rows' plumbing without libtorch: children are stopped once they logged the
// steps asked for, their rates read, and every row's table and verdicts written.
func TestStreamRowsReport(t *testing.T) {
	dir := t.TempDir()
	bin, self := filepath.Join(dir, "sli2vol"), filepath.Join(dir, "bench")
	os.WriteFile(bin, []byte(fakeSli2vol), 0o755)
	os.WriteFile(self, []byte(fakeBench), 0o755)
	var md strings.Builder
	err := streamRows(RunOptions{Self: self, Sli2vol: bin, Work: dir, Device: "cpu", Threads: 1, MemoryConfig: "cfg.yaml",
		TrainerConfig: "paper.yaml", StreamSteps: 4, StreamCases: 17, FirstStepCases: 3, TrainerSteps: 4, StreamRounds: 1,
		Log: t.Logf}, &md)
	if err != nil {
		t.Fatal(err)
	}
	rep := md.String()
	for _, want := range []string{
		"| in memory | 1 |", "| in memory | 16 |", "| in memory | 17 |", "`data.max_resident_gb: 0.285` (≈4 volumes) | 17 |",
		"Speed, cache (`data.cache`): 1.00 × in memory (target 0.95): **met**", "Growth in memory:",
		"| cache (`data.cache`), prepared beforehand |", "| trainer, median of the per-step `samples_per_s` | 10 (10–10) | **1.25** |",
	} {
		if !strings.Contains(rep, want) {
			t.Fatalf("report lacks %q:\n%s", want, rep)
		}
	}
	if rates, err := readRates(filepath.Join(dir, "stream", "run", "metrics.jsonl")); err != nil || len(rates) < 4 {
		t.Fatalf("the last run logged %d steps (%v), want it stopped after at least 4", len(rates), err)
	}
}

func TestSteady(t *testing.T) {
	med, thr := steady([]float64{1, 100, 2, 4, 4}, 2)
	if med != 4 || thr != 3 { // 3 steps of 1/2 + 1/4 + 1/4 = 1 s
		t.Fatalf("steady = %v, %v; want 4, 3", med, thr)
	}
}

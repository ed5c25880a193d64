package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
)

// prepare writes a cache that train then reads (data.cache); a changed data setting is a
// one-line refusal naming the key, and --force rebuilds.
func TestPrepareCommand(t *testing.T) {
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	if err := data.WritePhantomDataset(p("ds"), 2, 1, [3]int{32, 32, 10}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "prepare", "--data", p("ds"), "--pseudo", p("ds"), "--out", p("cache"))
	if code != 0 || !strings.Contains(out, "2 cases") {
		t.Fatalf("prepare: exit %d: %s %s", code, out, errOut)
	}
	cfg := p("c.yaml")
	os.WriteFile(cfg, []byte("device: cpu\ndata: {resize_range: [32, 34], crop: 32, cache: "+p("cache")+", workers: 2, prefetch: 2}\n"+
		"model: {mode: sli2vol+, width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2}\n"+
		"train: {batch_size: 4, epochs: 1}\n"), 0o644)
	if code, o, e := runCLI(t, "train", "--config", cfg, "--data", p("ds"), "--pseudo", p("ds"), "--out", p("run")); code != 0 {
		t.Fatalf("train from the cache: %s %s", o, e)
	}
	stale := p("stale.yaml")
	os.WriteFile(stale, []byte("data: {mri_percentiles: [1, 99]}\n"), 0o644)
	code, _, errOut = runCLI(t, "prepare", "--config", stale, "--data", p("ds"), "--out", p("cache"))
	if code != 2 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "data.mri_percentiles = [0.5 99.5], the config has [1 99]") {
		t.Fatalf("stale cache: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "prepare", "--config", stale, "--data", p("ds"), "--out", p("cache"), "--force"); code != 0 {
		t.Fatalf("--force: %s", errOut)
	}
}

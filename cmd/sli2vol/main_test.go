package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// plus is Sli2Vol+'s mode as the command line and the reports spell it.
var plus = string(configs.ModeSli2VolPlus)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"sli2vol ", "go go1.", "libtorch " + torchx.LibtorchVersion(), "cuda available: ", "host allocator: "} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	// The pinned pseudo-version from go.mod (the proxy serves only this one).
	if !strings.Contains(out, "gotorch v0.0.0-20201028015551-9afed2f3ad7b") {
		t.Errorf("gotorch version missing:\n%s", out)
	}
}

func TestConfigShowLayers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("train:\n  lr: 0.0003\nseed: 3\n"), 0o644)
	t.Setenv("SLI2VOL_TRAIN_EPOCHS", "9")
	code, out, errOut := runCLI(t, "config", "show", "--config", p, "--seed", "11", "--device", "cpu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"lr: 0.0003", "epochs: 9", "seed: 11", "device: cpu", "radius: 6"} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %q:\n%s", want, out)
		}
	}
}

func TestBadInputExitsTwoWithOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("train:\n  lrr: 1\n"), 0o644)
	cases := [][]string{
		{"config", "show", "--config", bad},
		{"config", "show", "--config", filepath.Join(dir, "missing.yaml")},
		{"config", "show", "--device", "gpu"},
		{"version", "--nope"},
		{"selftest", "--device", "cuda:99"},
	}
	for _, args := range cases {
		code, out, errOut := runCLI(t, args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "sli2vol: ") || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	_, _, errOut := runCLI(t, "config", "show", "--config", bad)
	if !strings.Contains(errOut, bad) || !strings.Contains(errOut, "train.lrr") {
		t.Errorf("error does not name file and key: %s", errOut)
	}
}

func TestModelSummary(t *testing.T) {
	code, out, errOut := runCLI(t, "model", "summary", "--config", "../../configs/paper.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Paper config: GEIG 4×3+1 = 13 input channels, 13×13 window; the total is the sum of
	// the encoder's layers (checked against a hand count in models' tests).
	for _, want := range []string{"model OEG-CFN (Sli2Vol+): input 13 channels", "window 13×13", "encoder.layer4", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// UNETR++ at the paper's size with Synapse's 14 classes: the total is the network's own
	// count (checked against the PyTorch reference and the UNETR++ paper in models' tests),
	// and stage 1 has 64/2 × 128/4 × 128/4 tokens.
	code, out, errOut = runCLI(t, "model", "summary", "--config", "../../configs/paper.yaml", "--network", "unetr", "--classes", "14")
	c, _ := configs.Load("../../configs/paper.yaml")
	m, err := models.NewUNETRPP(runs.UNETRConfig(c.UNETR, 1, 14))
	if err != nil {
		t.Fatal(err)
	}
	total := fmt.Sprintf("%-32s %12d", "total", models.ParamCount(m))
	if code != 0 || !strings.Contains(out, total) || !strings.Contains(out, "stage 1: [32 32 32] tokens") {
		t.Errorf("UNETR++ summary (exit %d) lacks %q:\n%s%s", code, total, out, errOut)
	}
}

func TestPhantomCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ph")
	code, out, errOut := runCLI(t, "phantom", "--out", dir, "--cases", "2", "--seed", "3", "--size", "32,32,12")
	if code != 0 || !strings.Contains(out, "wrote 2 phantom cases") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, f := range []string{"dataset.json", "imagesTr/phantom_001.nii.gz", "labelsTr/phantom_000.nii.gz"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	// Existing output is not overwritten without --force; bad sizes are one-line errors.
	for _, args := range [][]string{
		{"phantom", "--out", dir, "--cases", "2", "--size", "32,32,12"},
		{"phantom", "--out", dir, "--size", "32,32"},
		{"phantom"},
	} {
		if code, _, errOut := runCLI(t, args...); code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "phantom", "--out", dir, "--cases", "2", "--size", "32,32,12", "--force"); code != 0 {
		t.Fatalf("--force: %s", errOut)
	}
}

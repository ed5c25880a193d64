package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// TestMain lets tests run the CLI as a real subprocess: the test binary re-executes itself
// with SLI2VOL_TEST_CLI=1 and the command line.
func TestMain(m *testing.M) {
	if os.Getenv("SLI2VOL_TEST_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func cliProcess(args ...string) (*exec.Cmd, *bytes.Buffer) {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), "SLI2VOL_TEST_CLI=1")
	var errOut bytes.Buffer
	c.Stderr = &errOut
	return c, &errOut
}

const signalConfig = `device: cpu
threads: 1
data: {resize_range: [48, 52], crop: 48}
model: {mode: sli2vol, width: 8, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2}
train: {batch_size: 2, epochs: 4, lr: 0.001, checkpoint_every: 5}
`

func waitFor(t *testing.T, cond func() bool, what string) {
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func modelValues(t *testing.T, dir string) map[string][]float32 {
	sd, err := torchx.LoadStateDict(filepath.Join(dir, "model.pt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for k, v := range sd {
		out[k] = torchx.Float32s(v)
	}
	return out
}

// Real processes and real signals: SIGINT writes a checkpoint and exits 130; kill -9 loses
// at most one checkpoint interval, and --resume ends bit-identical to an uninterrupted run.
func TestSignalsAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	if err := data.WritePhantomDataset(p("data"), 2, 1, [3]int{48, 48, 12}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p("c.yaml"), []byte(signalConfig), 0o644)
	trainArgs := func(out string, extra ...string) []string {
		return append([]string{"train", "--config", p("c.yaml"), "--data", p("data"), "--out", out}, extra...)
	}

	full, errOut := cliProcess(trainArgs(p("full"))...)
	if err := full.Run(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, errOut)
	}

	// SIGINT mid-run.
	c, errOut := cliProcess(trainArgs(p("int"))...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, _ := os.ReadFile(p("int/metrics.jsonl"))
		return bytes.Count(b, []byte("\n")) >= 1
	}, "the first step")
	c.Process.Signal(os.Interrupt)
	err := c.Wait()
	if code := exitCode(err); code != 130 {
		t.Fatalf("SIGINT: exit %d, want 130\n%s", code, errOut)
	}
	last := strings.TrimSpace(errOut.String())
	last = last[strings.LastIndex(last, "\n")+1:]
	if !strings.Contains(last, "interrupted by interrupt") || !strings.Contains(last, "--resume") {
		t.Fatalf("SIGINT message: %q", last)
	}
	if _, err := os.Stat(p("int/checkpoint.pt")); err != nil {
		t.Fatal("no checkpoint after SIGINT")
	}
	if prov, err := runs.ReadProvenance(p("int")); err != nil || prov.Status != "stopped" || prov.Ended == nil {
		t.Fatalf("run.json after SIGINT: %+v %v", prov, err)
	}

	// kill -9 after the first periodic checkpoint, then resume to the end.
	k, errOut := cliProcess(trainArgs(p("kill"))...)
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(p("kill/checkpoint.pt")); return err == nil }, "a checkpoint")
	k.Process.Signal(syscall.SIGKILL)
	k.Wait()
	if _, err := os.Stat(p("kill/model.pt")); err == nil {
		t.Skip("the run finished before the kill landed; nothing to resume")
	}
	r, errOut := cliProcess(trainArgs(p("kill"), "--resume")...)
	if err := r.Run(); err != nil {
		t.Fatalf("resume: %v\n%s", err, errOut)
	}
	if prov, err := runs.ReadProvenance(p("kill")); err != nil || prov.Status != "finished" || len(prov.Resumed) != 1 {
		t.Fatalf("run.json after kill -9 and --resume: %+v %v", prov, err)
	}
	a, b := modelValues(t, p("full")), modelValues(t, p("kill"))
	for name := range a {
		for i := range a[name] {
			if a[name][i] != b[name][i] {
				t.Fatalf("%s[%d]: %g uninterrupted, %g after kill -9 and --resume", name, i, a[name][i], b[name][i])
			}
		}
	}
	// The SIGINT run resumes too.
	ri, errOut := cliProcess(trainArgs(p("int"), "--resume")...)
	if err := ri.Run(); err != nil {
		t.Fatalf("resume after SIGINT: %v\n%s", err, errOut)
	}
	c2 := modelValues(t, p("int"))
	for name := range a {
		for i := range a[name] {
			if a[name][i] != c2[name][i] {
				t.Fatalf("%s differs after SIGINT and --resume", name)
			}
		}
	}
}

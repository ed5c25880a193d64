package bench

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeSMI writes a stand-in for nvidia-smi: a single query prints idle; the sampling loop
// prints the levels in file "levels" (what a process would hold while it runs) and waits.
func fakeSMI(t *testing.T, idle string, levels string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "levels"), []byte(levels), 0o644)
	p := filepath.Join(dir, "smi")
	script := "#!/bin/sh\ncase \"$*\" in *loop-ms*) cat " + filepath.Join(dir, "levels") + "; exec sleep 30;; esac\necho " + idle + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGPUMemoryPeakAboveIdle(t *testing.T) {
	g := newGPUMemory(fakeSMI(t, "612", "612\n4700\n9800\n7000\n"))
	ran := false
	peak, err := g.during(func() error { time.Sleep(200 * time.Millisecond); ran = true; return nil })
	if err != nil || !ran {
		t.Fatalf("during: ran %v, err %v", ran, err)
	}
	if peak != 9800-612 {
		t.Fatalf("peak above idle %v, want %v", peak, 9800-612)
	}
	// A tool that fails gives NaN, and the work still runs.
	g = newGPUMemory(filepath.Join(t.TempDir(), "missing"))
	ran = false
	if peak, _ := g.during(func() error { ran = true; return nil }); !math.IsNaN(peak) || !ran {
		t.Fatalf("missing tool: peak %v ran %v", peak, ran)
	}
}

// Parity tolerances: the first loss to 1e-4 everywhere; propagated voxels to 0.5 % on the
// CPU and 2 % on a GPU.
func TestCheckParity(t *testing.T) {
	prop, train := Row{Name: "p", Propagate: true}, Row{Name: "t"}
	for _, c := range []struct {
		row    Row
		device string
		g, p   Result
		ok     bool
	}{
		{prop, "cpu", Result{Labelled: 1004}, Result{Labelled: 1000}, true},
		{prop, "cpu", Result{Labelled: 1006}, Result{Labelled: 1000}, false},
		{prop, "cuda", Result{Labelled: 1015}, Result{Labelled: 1000}, true},
		{prop, "cuda", Result{Labelled: 975}, Result{Labelled: 1000}, false},
		{train, "cuda", Result{FirstLoss: 2.00019}, Result{FirstLoss: 2}, true},
		{train, "cpu", Result{FirstLoss: 2.00021}, Result{FirstLoss: 2}, false},
		{train, "cpu", Result{FirstLoss: math.NaN()}, Result{FirstLoss: 2}, false},
	} {
		err := checkParity(c.row, c.device, &c.g, &c.p)
		if (err == nil) != c.ok {
			t.Errorf("%s on %s, Go %+v PyTorch %+v: err %v, want ok=%v", c.row.Name, c.device, c.g, c.p, err, c.ok)
		}
	}
}

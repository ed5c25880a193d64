package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sli2vol/sli2vol/data"
)

// The big-volume row (#19): `sli2vol segment` through a 512×512×N phantom, as a user runs it
// (NIfTI read and write included), with the cpu-small network, for N = BigVolumeSlices/4 and
// BigVolumeSlices. Propagation holds a chunk of slices on the device, never the volume's
// features, so the peak RSS may grow with N only by the voxel arrays a segment keeps: the
// image (float32), the annotation file's labels and the result (int32) — 12 bytes a voxel.

// bigVolumeRow appends the big-volume section.
func bigVolumeRow(o RunOptions, md *strings.Builder) error {
	dir := filepath.Join(o.Work, "bigvolume")
	run, err := bigVolumeModel(o, dir)
	if err != nil {
		return err
	}
	type point struct {
		n, first, last int
		peak           float64
		secs           float64
	}
	var pts []point
	for _, n := range []int{o.BigVolumeSlices / 4, o.BigVolumeSlices} {
		img, ann, err := bigVolumeCase(o, dir, n)
		if err != nil {
			return err
		}
		out := filepath.Join(dir, fmt.Sprintf("mask-%d.nii.gz", n))
		t0 := time.Now()
		peak, stdout, err := runPeakRSS(o.Sli2vol, "segment", "--model", run, "--image", img, "--annotation", ann, "--out", out, "--force")
		if err != nil {
			return fmt.Errorf("bigvolume: %w", err)
		}
		p := point{n: n, peak: peak, secs: time.Since(t0).Seconds()}
		fmt.Sscanf(stdout[strings.Index(stdout, "(slices ")+1:], "slices %d..%d", &p.first, &p.last)
		o.Log("bigvolume: 512×512×%d: slices %d..%d, peak RSS %.0f MiB, %.0f s", n, p.first, p.last, p.peak, p.secs)
		pts = append(pts, p)
	}
	arrays := func(n int) float64 { return float64(512*512*n) * 12 / (1 << 20) }
	a, b := pts[0], pts[1]
	fmt.Fprintf(md, "\nBig volumes (#19): `sli2vol segment` (cpu-small.yaml network, chunked propagation, %d threads) "+
		"through 512×512×N phantoms from the middle slice, NIfTI I/O included; peak RSS is the child's VmHWM.\n\n"+
		"| N slices | slices propagated | seconds | peak RSS (MiB) | of which voxel arrays (12 B/voxel, MiB) |\n|---|---|---|---|---|\n",
		o.Threads)
	for _, p := range pts {
		fmt.Fprintf(md, "| %d | %d (%d..%d) | %.0f | %.0f | %.0f |\n", p.n, p.last-p.first+1, p.first, p.last, p.secs, p.peak, arrays(p.n))
	}
	fmt.Fprintf(md, "\nFrom %d to %d slices the peak grew by %.0f MiB; the voxel arrays by %.0f MiB: the rest (%.0f MiB at %d slices) does not depend on N.\n",
		a.n, b.n, b.peak-a.peak, arrays(b.n)-arrays(a.n), b.peak-arrays(b.n), b.n)
	return nil
}

// bigVolumeModel trains a cpu-small run for a few steps (the weights' quality is not what
// the row measures; a structure must only be carried far).
func bigVolumeModel(o RunOptions, dir string) (string, error) {
	run := filepath.Join(dir, "run")
	if _, err := os.Stat(filepath.Join(run, "config.yaml")); err == nil {
		return run, nil
	}
	small := filepath.Join(dir, "small")
	if err := ensurePhantoms(o, small, 2, [3]int{64, 64, 32}); err != nil {
		return "", err
	}
	os.RemoveAll(run)
	_, _, err := runPeakRSS(o.Sli2vol, "train", "--config", o.MemoryConfig, "--data", small, "--out", run, "--epochs", "2", "--mode", "sli2vol")
	return run, err
}

// bigVolumeCase writes a 512×512×n phantom and an annotation of its middle slice.
func bigVolumeCase(o RunOptions, dir string, n int) (img, ann string, err error) {
	d := filepath.Join(dir, fmt.Sprintf("vol-%d", n))
	if err := ensurePhantoms(o, d, 1, [3]int{512, 512, n}); err != nil {
		return "", "", err
	}
	img = filepath.Join(d, "imagesTr", "phantom_000.nii.gz")
	ann = filepath.Join(d, "annotation.nii.gz")
	if _, err := os.Stat(ann); err == nil {
		return img, ann, nil
	}
	lab, err := data.LoadLabels(filepath.Join(d, "labelsTr", "phantom_000.nii.gz"), data.DefaultLimits)
	if err != nil {
		return "", "", err
	}
	s, err := data.NewSlicer(&lab.Geometry, -1)
	if err != nil {
		return "", "", err
	}
	a := make([]int32, len(lab.Data))
	data.SetSlice(s, a, s.Len()/2, data.Slice(s, lab.Data, s.Len()/2))
	return img, ann, data.WriteLabels(ann, a, &lab.Geometry, data.WriteOptions{})
}

// runPeakRSS runs bin with args, polling its VmHWM every 20 ms; it returns the peak (MiB)
// and the standard output.
func runPeakRSS(bin string, args ...string) (float64, string, error) {
	c := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		return 0, "", err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	peak := 0.0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return 0, "", fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, tail(errb.String(), 400))
			}
			return peak, out.String(), nil
		case <-tick.C:
			peak = max(peak, procRSSMiB(c.Process.Pid, "VmHWM"))
		}
	}
}

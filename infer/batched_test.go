package infer

import (
	"fmt"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// engines are the propagation paths every hand-computed test runs on: the per-slice
// reference and chunks of one and two slices (a chunk boundary, and a stop inside a chunk).
// (The automatic size is the per-slice path on the CPU.)
var engines = []struct {
	name     string
	perSlice bool
	batch    int
}{{"per-slice", true, 0}, {"chunk1", false, 1}, {"chunk2", false, 2}}

// withEngines runs f once per engine with p set to it.
func withEngines(t *testing.T, p *Propagator, f func(t *testing.T, p *Propagator)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			q := *p
			q.PerSlice, q.EncodeBatch = e.perSlice, e.batch
			f(t, &q)
		})
	}
}

// The chunked path against the per-slice reference with a real network (cpu-small.yaml's
// CFN, seeded weights) on a phantom, under each object estimate, from a slice where some
// structures end inside the volume, and from two annotated slices: the same stop slices, and
// labels differing on at most 0.01 % of the voxels on the CPU, 0.1 % on CUDA (batched
// convolutions may round differently).
func TestChunkedEqualsPerSlice(t *testing.T) {
	c, err := configs.Load("../configs/cpu-small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	torchx.ManualSeed(3)
	net, err := runs.NewCFN(c.Model)
	if err != nil {
		t.Fatal(err)
	}
	models.SetTraining(net, false)
	shape := [3]int{48, 40, 28}
	px, lab, geo := data.Phantom(shape, 5)
	img := &data.Image{Geometry: geo, Data: px}
	s, _ := data.NewSlicer(&geo, -1)
	annAt := func(n int) *data.Annotation {
		a := &data.Annotation{Slice: n, Mask: data.Slice(s, lab, n)}
		a.IDs = data.IDsIn(a.Mask)
		return a
	}
	requests := map[string][]*data.Annotation{"one": {annAt(9)}, "two": {annAt(6), annAt(15)}}
	// Chunk sizes: 1 and 5 (a round boundary, a stop inside a round); auto (0) only on CUDA,
	// where it chunks (on the CPU auto is the per-slice path itself).
	devices := map[string]struct {
		tol     float64
		batches []int
	}{"cpu": {1e-4, []int{1, 5}}}
	if torchx.CUDAAvailable() {
		devices["cuda"] = struct {
			tol     float64
			batches []int
		}{1e-3, []int{1, 5, 0}}
	}
	for dev, d := range devices {
		models.To(net, dev)
		for _, est := range configs.Estimates {
			for name, anns := range requests {
				for _, batch := range d.batches {
					t.Run(fmt.Sprintf("%s/%s/%s/batch%d", dev, est, name, batch), func(t *testing.T) {
						p := &Propagator{Model: net, Device: dev, Scale: c.Data.IntensityScale, MinArea: 20, Estimate: est, EncodeBatch: batch}
						if est == configs.EstimateModel {
							p.EstimateVolume = lab // a perfect "prediction": only the plumbing is under test
						}
						compareWithPerSlice(t, p, img, s, anns, d.tol)
					})
				}
			}
		}
	}
	models.To(net, "cpu")
}

func compareWithPerSlice(t *testing.T, p *Propagator, img *data.Image, s data.Slicer, anns []*data.Annotation, tol float64) {
	win := data.Window{Lo: -200, Up: 300}
	ref := *p
	ref.PerSlice = true
	want, err := ref.Run(img, s, win, Request{Annotations: anns})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Run(img, s, win, Request{Annotations: anns})
	if err != nil {
		t.Fatal(err)
	}
	if got.First != want.First || got.Last != want.Last {
		t.Fatalf("stopped at %d..%d, the per-slice path at %d..%d", got.First, got.Last, want.First, want.Last)
	}
	diff, labelled := 0, 0
	for i := range want.Labels {
		if got.Labels[i] != want.Labels[i] {
			diff++
		}
		if want.Labels[i] != 0 {
			labelled++
		}
	}
	if float64(diff) > tol*float64(len(want.Labels)) {
		t.Fatalf("%d of %d voxels differ", diff, len(want.Labels))
	}
	t.Logf("slices %d..%d, %d labelled voxels, %d differ", want.First, want.Last, labelled, diff)
}

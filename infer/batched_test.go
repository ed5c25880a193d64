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
// reference, chunks of one and two slices (a chunk boundary, and a stop inside a chunk), and
// the automatic chunk size.
var engines = []struct {
	name     string
	perSlice bool
	batch    int
}{{"per-slice", true, 0}, {"chunk1", false, 1}, {"chunk2", false, 2}, {"auto", false, 0}}

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
// structures end inside the volume: the same stop slices, and labels differing on at most
// 0.01 % of the voxels (batched convolutions may round differently).
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
	win := data.Window{Lo: -200, Up: 300}
	ann := &data.Annotation{Slice: 9, Mask: data.Slice(s, lab, 9)}
	ann.IDs = data.IDsIn(ann.Mask)
	for _, est := range configs.Estimates {
		for _, batch := range []int{1, 5, 0} {
			t.Run(fmt.Sprintf("%s/batch%d", est, batch), func(t *testing.T) {
				p := &Propagator{Model: net, Device: "cpu", Scale: c.Data.IntensityScale, MinArea: 20, Estimate: est}
				if est == configs.EstimateModel {
					p.EstimateVolume = lab // a perfect "prediction": only the plumbing is under test
				}
				ref := *p
				ref.PerSlice = true
				want, err := ref.Segment(img, s, win, ann)
				if err != nil {
					t.Fatal(err)
				}
				p.EncodeBatch = batch
				got, err := p.Segment(img, s, win, ann)
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
				if float64(diff) > 1e-4*float64(len(want.Labels)) {
					t.Fatalf("%d of %d voxels differ", diff, len(want.Labels))
				}
				t.Logf("slices %d..%d, %d labelled voxels, %d differ", want.First, want.Last, labelled, diff)
			})
		}
	}
}

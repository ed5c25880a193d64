package data

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestResizeKernels(t *testing.T) {
	// [0 1] to width 4 with half-pixel centres: 0, .25, .75, 1 (torch's bilinear).
	got := cropBilinear([]float32{0, 1}, 1, 2, 4, 0, 0, 1)
	if got[0] != 0 {
		t.Fatalf("got %v", got)
	}
	row := make([]float32, 0, 4)
	for x := 0; x < 4; x++ {
		v := cropBilinear([]float32{0, 1, 0, 1}, 2, 2, 4, 0, x, 1) // rows [0 1] and [0 1]
		row = append(row, v[0])
	}
	want := []float32{0, 0.25, 0.75, 1}
	for i := range want {
		if row[i] != want[i] {
			t.Fatalf("bilinear row %v, want %v", row, want)
		}
	}
	// Nearest keeps labels binary and picks floor((d+½)·n/m).
	lab := cropNearest([]int32{0, 7, 0, 0}, 2, 2, 4, 0, 0, 4)
	for i, v := range lab {
		if v != 0 && v != 1 {
			t.Fatalf("label value %g", v)
		}
		y, x := i/4, i%4
		if want := float32(0); y < 2 && x >= 2 {
			if v != 1 {
				t.Fatalf("nearest at (%d,%d) = %g, want 1", y, x, v)
			}
		} else if v != want {
			t.Fatalf("nearest at (%d,%d) = %g, want 0", y, x, v)
		}
	}
}

// trainVol is a CT-like volume whose image is +1000 HU inside a moving disc and −1000 HU
// outside, with the disc as its pseudo-label: image and PL must stay aligned in every pair.
func trainVol(t *testing.T, shape [3]int) TrainVolume {
	g := NewGeometry(shape, [3]float64{1, 1, 2}, [3]float64{})
	img := &Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	pl := &Labels{Geometry: g, Data: make([]int32, g.NumVoxels())}
	for k := 0; k < shape[2]; k++ {
		cx, cy := 8+float64(k), 12.0
		for j := 0; j < shape[1]; j++ {
			for i := 0; i < shape[0]; i++ {
				idx := g.Index(i, j, k)
				img.Data[idx] = -1000
				if math.Hypot(float64(i)-cx, float64(j)-cy) < 6 {
					img.Data[idx], pl.Data[idx] = 1000, 3
				}
			}
		}
	}
	s, _ := NewSlicer(&g, -1)
	n, err := NewNormalizer(DefaultIntensity, img.Data)
	if err != nil || !n.IsCT() {
		t.Fatalf("normalizer %v", err)
	}
	return MemoryVolume("v", img, pl, s, n)
}

func TestPairsAlignedAndIntegral(t *testing.T) {
	v := trainVol(t, [3]int{32, 28, 10})
	// Resize side equal to the slice (no scaling): image and PL crops coincide exactly.
	p, err := NewPairSampler([]TrainVolume{v}, PairConfig{Strides: []int{1}, SwapProb: 0.5, ResizeRange: [2]int{40, 48}, Crop: 24, Seed: 3, PL: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, ref := range p.Epoch(0) {
		s := sample(t, p, 0, i, ref)
		for _, m := range [][]float32{s.PLA, s.PLB} {
			for _, x := range m {
				if x != 0 && x != 1 {
					t.Fatalf("PL value %g not binary", x)
				}
			}
		}
		// The image is 1 inside the disc and 0 outside (HU ±1000 beyond any window); after
		// the same resize and crop, thresholded image and PL disagree at most on a rim.
		for _, pr := range [][2][]float32{{s.A, s.PLA}, {s.B, s.PLB}} {
			diff, inside := 0, 0
			for k := range pr[0] {
				im := pr[0][k] > 0.5
				if im != (pr[1][k] == 1) {
					diff++
				}
				if pr[1][k] == 1 {
					inside++
				}
			}
			if inside > 0 && float64(diff) > 0.1*float64(inside)+4 {
				t.Fatalf("pair %d: image and PL disagree on %d pixels (PL has %d): misaligned", i, diff, inside)
			}
		}
	}
}

func TestPairsDeterministicStridesSwap(t *testing.T) {
	v := trainVol(t, [3]int{20, 20, 12})
	cfg := PairConfig{Strides: []int{2, 3}, SwapProb: 0.5, ResizeRange: [2]int{20, 24}, Crop: 16, Seed: 7}
	p, _ := NewPairSampler([]TrainVolume{v}, cfg)
	refs := p.Epoch(0)
	if len(refs) != 10 { // j = 0..9 (j+2 < 12)
		t.Fatalf("%d pairs, want 10", len(refs))
	}
	swaps := 0
	for i, r := range refs {
		if (r.K != 2 && r.K != 3) || r.J+r.K >= 12 {
			t.Fatalf("pair %+v", r)
		}
		if sample(t, p, 0, i, r).Swapped {
			swaps++
		}
	}
	q, _ := NewPairSampler([]TrainVolume{v}, cfg)
	for i, r := range q.Epoch(0) {
		if r != refs[i] {
			t.Fatal("same seed, different epoch order")
		}
		a, b := sample(t, p, 0, i, r), sample(t, q, 0, i, r)
		for k := range a.A {
			if a.A[k] != b.A[k] {
				t.Fatal("same seed, different augmentation")
			}
		}
	}
	cfg.Seed = 8
	o, _ := NewPairSampler([]TrainVolume{v}, cfg)
	same := true
	for i, r := range o.Epoch(0) {
		same = same && r == refs[i]
	}
	if same {
		t.Fatal("another seed gave the same order")
	}
	// Swap probability: over many epochs close to one half.
	total, sw := 0, 0
	for e := 0; e < 30; e++ {
		for i, r := range p.Epoch(e) {
			total++
			if sample(t, p, e, i, r).Swapped {
				sw++
			}
		}
	}
	if f := float64(sw) / float64(total); f < 0.4 || f > 0.6 {
		t.Fatalf("swapped %.2f of pairs, want ~0.5", f)
	}
	if _, err := NewPairSampler([]TrainVolume{v}, PairConfig{Strides: []int{20}, ResizeRange: [2]int{20, 20}, Crop: 16}); err == nil {
		t.Fatal("stride longer than the volume accepted")
	}
}

func TestBatchesResume(t *testing.T) {
	v := trainVol(t, [3]int{20, 20, 12})
	p, _ := NewPairSampler([]TrainVolume{v}, PairConfig{Strides: []int{1}, SwapProb: 0.5, ResizeRange: [2]int{20, 24}, Crop: 16, Seed: 1, PL: true})
	var all []Batch
	for _, batch := range p.Batches(2, 4, 0, Shard{}) {
		all = append(all, batch)
	}
	if len(all) != 3 || all[2].Size != 3 || len(all[0].A) != 4*16*16 || len(all[0].PLB) != 4*16*16 {
		t.Fatalf("batches: %d, last size %d", len(all), all[len(all)-1].Size)
	}
	if p.NumBatches(2, 4, Shard{}) != 3 {
		t.Fatal("NumBatches")
	}
	// Resuming at batch 1 yields exactly batches 1 and 2.
	var resumed []Batch
	var index []int
	for b, batch := range p.Batches(2, 4, 1, Shard{}) {
		resumed = append(resumed, batch)
		index = append(index, b)
	}
	if len(resumed) != 2 || index[0] != 1 || index[1] != 2 {
		t.Fatalf("%d resumed batches, indices %v; want batches 1 and 2", len(resumed), index)
	}
	// Breaking out of the loop ends the sequence (range-over-func's yield contract).
	n := 0
	for range p.Batches(2, 4, 0, Shard{}) {
		if n++; n == 2 {
			break
		}
	}
	for k := range resumed[0].B {
		if resumed[0].B[k] != all[1].B[k] {
			t.Fatal("resumed batch differs")
		}
	}
}

// Shards cut an epoch as torch's DistributedSampler does: wrap-around padding (or a dropped
// tail) and every World-th position from Rank; no pair is missing or taken twice beyond the
// padding.
func TestShardPositions(t *testing.T) {
	for _, tc := range []struct {
		n    int
		sh   Shard
		want []int
	}{
		{5, Shard{}, []int{0, 1, 2, 3, 4}},
		{5, Shard{Rank: 0, World: 2}, []int{0, 2, 4}},
		{5, Shard{Rank: 1, World: 2}, []int{1, 3, 0}}, // padded with the first pair
		{5, Shard{Rank: 1, World: 2, DropLast: true}, []int{1, 3}},
		{7, Shard{Rank: 2, World: 3}, []int{2, 5, 1}},
	} {
		got := tc.sh.positions(tc.n)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%d pairs, %+v: %v, want %v", tc.n, tc.sh, got, tc.want)
		}
	}
	// Two ranks' batches of a step together are the single-process batch of twice the size:
	// the same pairs, augmented alike.
	v := trainVol(t, [3]int{20, 20, 12})
	p, _ := NewPairSampler([]TrainVolume{v}, PairConfig{Strides: []int{1}, SwapProb: 0.5, ResizeRange: [2]int{20, 24}, Crop: 16, Seed: 1})
	var whole Batch
	for _, b := range p.Batches(1, 4, 0, Shard{}) {
		whole = b
		break
	}
	seen := map[PairRef][]float32{}
	for i, ref := range whole.Refs {
		seen[ref] = whole.A[i*16*16 : (i+1)*16*16]
	}
	for r := 0; r < 2; r++ {
		for _, b := range p.Batches(1, 2, 0, Shard{Rank: r, World: 2}) {
			for i, ref := range b.Refs {
				want, ok := seen[ref]
				if !ok {
					t.Fatalf("rank %d's first batch has %+v, not in the single-process batch", r, ref)
				}
				if fmt.Sprint(want) != fmt.Sprint(b.A[i*16*16:(i+1)*16*16]) {
					t.Fatalf("rank %d: %+v augmented differently", r, ref)
				}
			}
			break
		}
	}
}

func sample(t *testing.T, p *PairSampler, e, i int, ref PairRef) Pair {
	t.Helper()
	s, err := p.Sample(e, i, ref)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Batches prepared ahead by several workers come out in the order, and with the values, of
// batches built one by one; stopping early leaves no worker behind.
func TestBatchesPrefetched(t *testing.T) {
	v := trainVol(t, [3]int{20, 20, 12})
	cfg := PairConfig{Strides: []int{1}, SwapProb: 0.5, ResizeRange: [2]int{20, 24}, Crop: 16, Seed: 1, PL: true}
	p, _ := NewPairSampler([]TrainVolume{v}, cfg)
	var want []Batch
	for _, b := range p.Batches(3, 2, 1, Shard{}) {
		want = append(want, b)
	}
	before := runtime.NumGoroutine()
	for _, ahead := range []Prefetch{{Workers: 1, Depth: 1}, {Workers: 3, Depth: 2}, {Workers: 4, Depth: 9}} {
		q, _ := NewPairSampler([]TrainVolume{v}, cfg)
		q.Ahead = ahead
		k := 0
		for b, got := range q.Batches(3, 2, 1, Shard{}) {
			if b != k+1 || !reflect.DeepEqual(got, want[k]) {
				t.Fatalf("%+v: batch %d (index %d) differs from the one built in turn", ahead, k, b)
			}
			k++
		}
		if k != len(want) {
			t.Fatalf("%+v: %d batches, want %d", ahead, k, len(want))
		}
		for range q.Batches(3, 2, 0, Shard{}) {
			break
		}
	}
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before, %d after: prefetch workers left running", before, after)
	}
}

// A panic while a worker builds an item is raised where that item is used.
func TestAheadPanicReachesTheCaller(t *testing.T) {
	got := func() (v any) {
		defer func() { v = recover() }()
		for i := range Ahead(Prefetch{Workers: 2, Depth: 2}, 0, 10, func(i int) int {
			if i == 3 {
				panic("item 3")
			}
			return i
		}) {
			if i > 3 {
				t.Errorf("item %d used after the panic of item 3", i)
			}
		}
		return nil
	}()
	if got != "item 3" {
		t.Fatalf("recovered %v, want the worker's panic", got)
	}
}

// data.volume_group: the epoch holds the same pairs as the global shuffle (the same strides
// drawn), each volume's pairs form one run inside its group's stretch, a group's stretch
// holds at most G volumes, and the order is a function of (seed, epoch).
func TestVolumeGroupOrder(t *testing.T) {
	var vols []TrainVolume
	for i := 0; i < 5; i++ {
		vols = append(vols, trainVol(t, [3]int{20, 20, 8 + i}))
	}
	cfg := PairConfig{Strides: []int{1, 2}, ResizeRange: [2]int{20, 24}, Crop: 16, Seed: 5}
	global, _ := NewPairSampler(vols, cfg)
	cfg.VolumeGroup = 2
	grouped, _ := NewPairSampler(vols, cfg)
	a, b := global.Epoch(1), grouped.Epoch(1)
	sortRefs := func(r []PairRef) []PairRef {
		r = slices.Clone(r)
		slices.SortFunc(r, func(x, y PairRef) int { return cmp.Or(x.Vol-y.Vol, x.J-y.J) })
		return r
	}
	if !slices.Equal(sortRefs(a), sortRefs(b)) {
		t.Fatal("grouping changed which pairs the epoch holds")
	}
	// Volume stretches: the volumes in order of first appearance, then check the runs.
	var seq []int
	for _, r := range b {
		if len(seq) == 0 || seq[len(seq)-1] != r.Vol {
			seq = append(seq, r.Vol)
		}
	}
	var firstSeen []int
	for _, v := range seq {
		if !slices.Contains(firstSeen, v) {
			firstSeen = append(firstSeen, v)
		}
	}
	groupOf := map[int]int{}
	for i, v := range firstSeen {
		groupOf[v] = i / 2
	}
	for i := 1; i < len(seq); i++ {
		if groupOf[seq[i]] < groupOf[seq[i-1]] {
			t.Fatalf("volume %d returns after its group ended: %v", seq[i], seq)
		}
	}
	if len(seq) <= len(vols) {
		t.Fatalf("pairs not shuffled within groups: volume runs %v", seq)
	}
	if !slices.Equal(b, grouped.Epoch(1)) || slices.Equal(firstSeen, firstOrder(grouped.Epoch(2))) {
		t.Fatal("the grouped order is not a function of (seed, epoch)")
	}
}

// firstOrder is the volumes of an epoch in order of first appearance.
func firstOrder(refs []PairRef) []int {
	var out []int
	for _, r := range refs {
		if !slices.Contains(out, r.Vol) {
			out = append(out, r.Vol)
		}
	}
	return out
}

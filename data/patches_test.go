package data

import (
	"math/rand"
	"testing"
)

// indexVolume has image value = linear voxel index + 1, so every patch voxel names its source.
func indexVolume(shape [3]int, slices []int) *SegVolume {
	n := shape[0] * shape[1] * shape[2]
	v := &SegVolume{ID: "v", Shape: shape, Image: make([]float32, n), Labels: make([]int32, n), Slices: slices}
	for i := range v.Image {
		v.Image[i] = float32(i + 1)
	}
	// A 2×2×2 foreground cube of class 2 in one corner region.
	for z := 1; z < 3; z++ {
		for y := 9; y < 11; y++ {
			for x := 9; x < 11; x++ {
				if z < shape[0] && y < shape[1] && x < shape[2] {
					v.Labels[(z*shape[1]+y)*shape[2]+x] = 2
				}
			}
		}
	}
	return v
}

func TestPatchSamplerCopiesExactVoxels(t *testing.T) {
	shape := [3]int{6, 12, 12}
	v := indexVolume(shape, nil)
	r := rand.New(rand.NewSource(1))
	for _, mirror := range []bool{false, true} {
		s, err := NewPatchSampler([]*SegVolume{v}, [3]int{4, 8, 8}, 0.5, mirror)
		if err != nil {
			t.Fatal(err)
		}
		b := mustSample(t, s, 8, r)
		n := 4 * 8 * 8
		for i := 0; i < b.B; i++ {
			fg := false
			for o := 0; o < n; o++ {
				src := int(b.Image[i*n+o]) - 1
				if src < 0 || b.Known[i*n+o] != 1 {
					t.Fatalf("patch %d voxel %d: outside a volume larger than the patch", i, o)
				}
				if b.Labels[i*n+o] != v.Labels[src] {
					t.Fatalf("patch %d voxel %d: label %d, source voxel %d has %d", i, o, b.Labels[i*n+o], src, v.Labels[src])
				}
				fg = fg || b.Labels[i*n+o] > 0
			}
			// Neighbours along x differ by ±1 in source index: a contiguous (maybe mirrored) crop.
			d := int(b.Image[i*n+1]) - int(b.Image[i*n])
			if (!mirror && d != 1) || (d != 1 && d != -1) {
				t.Fatalf("patch %d: x step %d (mirror %v)", i, d, mirror)
			}
			// Items 4..7 (round(8·0.5) on) are forced to hold foreground.
			if i >= 4 && !fg {
				t.Fatalf("patch %d: no foreground although oversampled", i)
			}
		}
	}
}

func TestPatchSamplerPadsAndSingleSlice(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	// Volume smaller than the patch along D (3 < 4) and H (6 < 8): centred, zero-padded.
	small := indexVolume([3]int{3, 6, 12}, nil)
	for i := range small.Labels {
		small.Labels[i] = 0
	}
	s, _ := NewPatchSampler([]*SegVolume{small}, [3]int{4, 8, 8}, 0, false)
	b := mustSample(t, s, 1, r)
	var zeros int
	for o := range b.Image {
		if b.Image[o] == 0 {
			zeros++
		}
		if b.Known[o] != 1 {
			t.Fatal("padding of a fully labelled volume must count as known background")
		}
	}
	// Of 4×8×8 voxels, 3×6×8 come from the volume.
	if want := 4*8*8 - 3*6*8; zeros != want {
		t.Fatalf("%d padded voxels, want %d", zeros, want)
	}

	// FS-SS: only slice 4 of the volume is known; it must lie in every patch.
	v := indexVolume([3]int{10, 12, 12}, []int{4})
	s, _ = NewPatchSampler([]*SegVolume{v}, [3]int{3, 8, 8}, 0.33, true)
	b = mustSample(t, s, 16, r)
	plane := 12 * 12
	n := 3 * 8 * 8
	for i := 0; i < b.B; i++ {
		known := 0
		for o := 0; o < n; o++ {
			src := int(b.Image[i*n+o]) - 1
			onSlice := src/plane == 4
			if (b.Known[i*n+o] == 1) != onSlice {
				t.Fatalf("patch %d voxel %d: known %v but source slice %d", i, o, b.Known[i*n+o], src/plane)
			}
			if onSlice {
				known++
			}
		}
		if known != 64 {
			t.Fatalf("patch %d: %d known voxels, want one 8×8 plane", i, known)
		}
	}
}

func TestSliceOrderAndClassMap(t *testing.T) {
	g := NewGeometry([3]int{3, 4, 5}, [3]float64{1, 1, 1}, [3]float64{})
	s, err := NewSlicer(&g, 1)
	if err != nil {
		t.Fatal(err)
	}
	vol := make([]int32, 60)
	for i := range vol {
		vol[i] = int32(i)
	}
	d := ToSliceOrder(s, vol)
	// Slice n of the D×H×W layout is anatomical slice n, as Slice returns it.
	h, w := s.Size()
	for n := 0; n < s.Len(); n++ {
		want := Slice(s, vol, n)
		for i := range want {
			if d[n*h*w+i] != want[i] {
				t.Fatalf("slice %d voxel %d: %d, want %d", n, i, d[n*h*w+i], want[i])
			}
		}
	}
	back := FromSliceOrder(s, d)
	for i := range vol {
		if back[i] != vol[i] {
			t.Fatalf("round trip voxel %d: %d", i, back[i])
		}
	}
	m := NewClassMap([]int32{0, 7, 7, 3}, []int32{12175})
	if len(m.IDs) != 4 || m.IDs[0] != 0 || m.IDs[1] != 3 || m.IDs[3] != 12175 {
		t.Fatalf("ids %v", m.IDs)
	}
	c, err := m.ToClasses([]int32{12175, 0, 3, 7})
	if err != nil || c[0] != 3 || c[1] != 0 || c[2] != 1 || c[3] != 2 {
		t.Fatalf("classes %v, %v", c, err)
	}
	m.ToIDs(c)
	if c[0] != 12175 || c[3] != 7 {
		t.Fatalf("ids back %v", c)
	}
	if _, err := m.ToClasses([]int32{5}); err == nil {
		t.Fatal("unknown id accepted")
	}
}

func TestPatchBatchDownsampleKeepsKnownSlice(t *testing.T) {
	// One 6×4×4 patch, image = voxel index, only slice 3 known.
	b := &PatchBatch{B: 1, Patch: [3]int{6, 4, 4}, Image: make([]float32, 96), Labels: make([]int32, 96), Known: make([]float32, 96)}
	for o := range b.Image {
		b.Image[o] = float32(o)
		if o/16 == 3 {
			b.Known[o] = 1
		}
	}
	d := b.Downsample([3]int{2, 2, 2})
	if d.Patch != [3]int{3, 2, 2} {
		t.Fatalf("patch %v", d.Patch)
	}
	for o := range d.Image {
		z, y, x := o/4, o/2%2, o%2
		src := ((2*z+1)*4+2*y)*4 + 2*x // phase 1 on D keeps slice 3
		if d.Image[o] != float32(src) || (d.Known[o] == 1) != (z == 1) {
			t.Fatalf("voxel %d: image %v known %v, want source %d", o, d.Image[o], d.Known[o], src)
		}
	}
}

// A rank's part of a global batch is its patches, voxel for voxel.
func TestPatchBatchPart(t *testing.T) {
	v := indexVolume([3]int{6, 10, 10}, nil)
	s, _ := NewPatchSampler([]*SegVolume{v}, [3]int{4, 8, 8}, 0.5, false)
	b := mustSample(t, s, 4, rand.New(rand.NewSource(4)))
	n := 4 * 8 * 8
	for k := 0; k < 2; k++ {
		p := b.Part(k, 2)
		if p.B != 2 || len(p.Image) != 2*n || len(p.Labels) != 2*n || len(p.Known) != 2*n {
			t.Fatalf("part %d: B %d, %d voxels", k, p.B, len(p.Image))
		}
		for i := range p.Image {
			if p.Image[i] != b.Image[k*2*n+i] || p.Labels[i] != b.Labels[k*2*n+i] || p.Known[i] != b.Known[k*2*n+i] {
				t.Fatalf("part %d voxel %d differs from the batch's", k, i)
			}
		}
	}
	if b.Part(0, 1) != b {
		t.Fatal("the only part is the batch")
	}
}

func mustSample(t *testing.T, s *PatchSampler, b int, r *rand.Rand) *PatchBatch {
	t.Helper()
	batch, err := s.Sample(b, r)
	if err != nil {
		t.Fatal(err)
	}
	return batch
}

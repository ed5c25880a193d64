package data

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
)

// The user's single annotated slice: found in a label file in which exactly one slice is
// labelled, picked from a full label volume by slice number, or — for benchmarks on fully
// labelled data — chosen per structure near its largest cross-section (paper §4.3).

// Annotation is one labelled slice: its anatomical index and its H·W label ids.
type Annotation struct {
	Slice int
	Mask  []int32
	IDs   []int32 // the ids present, ascending; multi-class ids propagate together
}

// IDsIn lists the non-zero ids of a mask, ascending.
func IDsIn(mask []int32) []int32 {
	seen := map[int32]bool{}
	for _, v := range mask {
		if v != 0 {
			seen[v] = true
		}
	}
	out := make([]int32, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// labelledSlices lists anatomical slices with any non-zero voxel, in one pass over the
// array in memory order (a 512×512×300 annotation is scanned in tens of milliseconds).
func labelledSlices(l *Labels, s Slicer) []int {
	stride := 1
	for a := 0; a < s.Axis; a++ {
		stride *= s.shape[a]
	}
	n := s.Len()
	has := make([]bool, n) // by array index along the axis
	for i, v := range l.Data {
		if v != 0 {
			has[(i/stride)%n] = true
		}
	}
	var out []int
	for a := 0; a < n; a++ {
		if has[s.ArrayIndex(a)] {
			out = append(out, a)
		}
	}
	return out
}

// FindAnnotation returns the annotation in l. With slice < 0 the file must have exactly one
// labelled slice; with slice ≥ 0 that slice is taken (and must be labelled).
func FindAnnotation(l *Labels, s Slicer, slice int) (*Annotation, error) {
	if slice >= 0 {
		if slice >= s.Len() {
			return nil, fmt.Errorf("%s: annotated slice %d is out of range (the volume has %d slices along axis %d)", l.Source, slice, s.Len(), s.Axis)
		}
		m := Slice(s, l.Data, slice)
		ids := IDsIn(m)
		if len(ids) == 0 {
			return nil, fmt.Errorf("%s: slice %d has no labelled voxel", l.Source, slice)
		}
		return &Annotation{Slice: slice, Mask: m, IDs: ids}, nil
	}
	found := labelledSlices(l, s)
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s: no labelled voxel: the annotation is empty", l.Source)
	case 1:
		m := Slice(s, l.Data, found[0])
		return &Annotation{Slice: found[0], Mask: m, IDs: IDsIn(m)}, nil
	}
	shown := make([]string, 0, 5)
	for i, n := range found {
		if i == 5 {
			shown = append(shown, "...")
			break
		}
		shown = append(shown, fmt.Sprint(n))
	}
	return nil, fmt.Errorf("%s: %d slices are labelled (%s along axis %d); an annotation has one — pick it with --slice N",
		l.Source, len(found), strings.Join(shown, ", "), s.Axis)
}

// FindAnnotations returns every labelled slice of l as an annotation, in slice order (a
// correction or a second annotated slice; see infer.Request).
func FindAnnotations(l *Labels, s Slicer) ([]*Annotation, error) {
	found := labelledSlices(l, s)
	if len(found) == 0 {
		return nil, fmt.Errorf("%s: no labelled voxel: the annotation is empty", l.Source)
	}
	out := make([]*Annotation, len(found))
	for i, n := range found {
		m := Slice(s, l.Data, n)
		out[i] = &Annotation{Slice: n, Mask: m, IDs: IDsIn(m)}
	}
	return out, nil
}

// BenchmarkChoice records which slice the benchmark policy annotated for one structure.
type BenchmarkChoice struct {
	ID      int32
	Slice   int // the annotated slice
	Largest int // the slice of largest area
	Area    int // voxels of the structure on the annotated slice
	First   int // the structure's extent along the axis
	Last    int
}

// BenchmarkAnnotations picks, per structure id of a full label volume, a slice uniformly at
// random among those within ±spread of its largest cross-section that contain it (paper §4.3,
// spread 3). Deterministic for a given r.
func BenchmarkAnnotations(l *Labels, s Slicer, r *rand.Rand, spread int) []BenchmarkChoice {
	h, w := s.Size()
	area := map[int32][]int{}
	for n := 0; n < s.Len(); n++ {
		for rr := 0; rr < h; rr++ {
			for c := 0; c < w; c++ {
				v := l.Data[s.voxel(n, rr, c)]
				if v == 0 {
					continue
				}
				a := area[v]
				if a == nil {
					a = make([]int, s.Len())
					area[v] = a
				}
				a[n]++
			}
		}
	}
	ids := make([]int32, 0, len(area))
	for id := range area {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []BenchmarkChoice
	for _, id := range ids {
		a := area[id]
		best, first, last := 0, -1, -1
		for n, v := range a {
			if v > a[best] {
				best = n
			}
			if v > 0 {
				if first < 0 {
					first = n
				}
				last = n
			}
		}
		var cands []int
		for n := best - spread; n <= best+spread; n++ {
			if n >= 0 && n < len(a) && a[n] > 0 {
				cands = append(cands, n)
			}
		}
		pick := cands[r.Intn(len(cands))]
		out = append(out, BenchmarkChoice{ID: id, Slice: pick, Largest: best, Area: a[pick], First: first, Last: last})
	}
	return out
}

package data

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand"
	"slices"
	"sort"
)

// SegVolume is a volume laid out for a 3D segmentation network: D×H×W with D the anatomical
// slice index (Slicer order) and each slice H×W row-major, intensities normalised, labels as
// class indices 0..K−1. Slices lists the slices whose labels are known when only those are
// (the FS-SS baseline: the annotated slice(s) of the case); nil means every voxel is labelled.
//
// A volume too big to hold is read through Rows instead of Image and Labels; LabelIDs and
// Foreground (ForegroundIndex's lists) were listed when it was cached.
type SegVolume struct {
	ID     string
	Shape  [3]int // D, H, W
	Image  []float32
	Labels []int32 // nil at prediction time
	Slices []int

	Rows       SegRows
	LabelIDs   []int32
	Foreground [][]int32
	classOf    map[int32]int32 // Rows' label ids → class indices (WithClasses)
}

// SegRows reads rows of a D×H×W volume: standardised intensities and label ids.
type SegRows interface {
	// Rows fills img and lab with rows y0 … y0+n−1 of slice z (n·W values each).
	Rows(z, y0, n int, img []float32, lab []int32) error
}

// IDs are the label ids the volume holds (for NewClassMap): its labels, or the ids listed
// when it was cached.
func (v *SegVolume) IDs() []int32 {
	if v.Rows != nil {
		return v.LabelIDs
	}
	return v.Labels
}

// WithClasses is v with its label ids mapped to m's class indices.
func (v *SegVolume) WithClasses(m ClassMap) (*SegVolume, error) {
	cp := *v
	if v.Rows == nil {
		cl, err := m.ToClasses(v.Labels)
		if err != nil {
			return nil, err
		}
		cp.Labels = cl
		return &cp, nil
	}
	cp.classOf = map[int32]int32{}
	for k, id := range m.IDs {
		cp.classOf[id] = int32(k)
	}
	for _, id := range v.LabelIDs {
		if _, ok := cp.classOf[id]; !ok {
			return nil, fmt.Errorf("label id %d is not one of the network's classes %v", id, m.IDs)
		}
	}
	return &cp, nil
}

// rows returns rows y0 … y0+n−1 of slice z as class indices: a view of a volume in memory,
// or read into buf.
func (v *SegVolume) rows(z, y0, n int, buf *rowBuf) ([]float32, []int32, error) {
	w := v.Shape[2]
	if v.Rows == nil {
		off := (z*v.Shape[1] + y0) * w
		return v.Image[off : off+n*w], v.Labels[off : off+n*w], nil
	}
	img, lab := buf.get(n * w)
	if err := v.Rows.Rows(z, y0, n, img, lab); err != nil {
		return nil, nil, err
	}
	for i, id := range lab {
		lab[i] = v.classOf[id]
	}
	return img, lab, nil
}

// rowBuf is scratch space for rows read from a SegRows.
type rowBuf struct {
	img []float32
	lab []int32
}

func (b *rowBuf) get(n int) ([]float32, []int32) {
	if cap(b.img) < n {
		b.img, b.lab = make([]float32, n), make([]int32, n)
	}
	return b.img[:n], b.lab[:n]
}

func (v *SegVolume) known(z int) bool {
	if v.Slices == nil {
		return true
	}
	for _, s := range v.Slices {
		if s == z {
			return true
		}
	}
	return false
}

// ToSliceOrder lays vol (array order) out as D×H×W in s's anatomical order.
func ToSliceOrder[T any](s Slicer, vol []T) []T {
	h, w := s.Size()
	out := make([]T, 0, s.Len()*h*w)
	for n := 0; n < s.Len(); n++ {
		out = append(out, Slice(s, vol, n)...)
	}
	return out
}

// FromSliceOrder is the inverse of ToSliceOrder.
func FromSliceOrder[T any](s Slicer, v []T) []T {
	h, w := s.Size()
	out := make([]T, len(v))
	for n := 0; n < s.Len(); n++ {
		SetSlice(s, out, n, v[n*h*w:(n+1)*h*w])
	}
	return out
}

// Standardize maps the windowed volume (values in [0, 1]) to zero mean and unit variance
// over the volume, as nnU-Net's z-scoring does, so the network sees the same scale for CT
// and MRI.
func Standardize(v []float32) {
	st := NewStandardStats(v)
	for i, x := range v {
		v[i] = st.Apply(x)
	}
}

// StandardStats are a volume's mean and standard deviation, as Standardize uses them.
type StandardStats struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// NewStandardStats sums v in its order (D×H×W), so that a cache computing them from the
// same slices gets the same bits.
func NewStandardStats(v []float32) StandardStats {
	var sum StandardSum
	sum.Add(v)
	return sum.Stats()
}

// StandardSum accumulates StandardStats over a volume given in parts (slice by slice, in
// order); the result has the bits of NewStandardStats over the whole.
type StandardSum struct {
	s, s2 float64
	n     int
}

// Add takes the next values.
func (a *StandardSum) Add(v []float32) {
	for _, x := range v {
		a.s += float64(x)
		a.s2 += float64(x) * float64(x)
	}
	a.n += len(v)
}

// Stats are the mean and standard deviation (1 when the values are constant).
func (a *StandardSum) Stats() StandardStats {
	n := float64(a.n)
	mean := a.s / n
	std := math.Sqrt(max(a.s2/n-mean*mean, 0))
	if std < 1e-6 {
		std = 1
	}
	return StandardStats{Mean: mean, Std: std}
}

// Apply standardises one value.
func (st StandardStats) Apply(x float32) float32 { return float32((float64(x) - st.Mean) / st.Std) }

// ClassMap maps label ids to contiguous class indices (0 = background) and back.
type ClassMap struct {
	IDs []int32 // IDs[k] is the label id of class k; IDs[0] = 0
}

// NewClassMap collects the ids present in the label volumes.
func NewClassMap(vols ...[]int32) ClassMap {
	seen := map[int32]bool{0: true}
	for _, v := range vols {
		for _, x := range v {
			seen[x] = true
		}
	}
	ids := make([]int32, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ClassMap{IDs: ids}
}

// ToClasses maps ids to class indices; an id the map does not know is an error.
func (m ClassMap) ToClasses(v []int32) ([]int32, error) {
	idx := make(map[int32]int32, len(m.IDs))
	for k, id := range m.IDs {
		idx[id] = int32(k)
	}
	out := make([]int32, len(v))
	for i, x := range v {
		k, ok := idx[x]
		if !ok {
			return nil, fmt.Errorf("label id %d is not one of the network's classes %v", x, m.IDs)
		}
		out[i] = k
	}
	return out, nil
}

// ToIDs maps class indices back to label ids (in place).
func (m ClassMap) ToIDs(v []int32) {
	for i, k := range v {
		v[i] = m.IDs[k]
	}
}

// PatchBatch is a batch of B patches, each D×H×W (in the sampler's patch size): images,
// class indices, and a 0/1 weight per voxel that is 0 where the label is unknown (padding
// outside the volume stays labelled background, as nnU-Net pads; FS-SS leaves every slice
// but the annotated one unknown).
type PatchBatch struct {
	B      int
	Patch  [3]int
	Image  []float32
	Labels []int32
	Known  []float32
}

// PatchSampler draws random training patches in nnU-Net's way: a fraction of each batch
// (ForegroundFraction, 0.33) is centred on a random voxel of a random foreground class, the
// rest anywhere; volumes smaller than the patch are zero-padded; each axis is mirrored with
// probability ½ (MirrorAxes).
type PatchSampler struct {
	Vols               []*SegVolume
	Patch              [3]int
	ForegroundFraction float64
	Mirror             bool
	fg                 [][][]int32 // per volume, per class ≥ 1: up to 10,000 voxel indices
}

// NewPatchSampler indexes the foreground voxels of vols (where their labels are known);
// volumes read through Rows bring their lists.
func NewPatchSampler(vols []*SegVolume, patch [3]int, fgFraction float64, mirror bool) (*PatchSampler, error) {
	if len(vols) == 0 {
		return nil, fmt.Errorf("patch sampler: no volumes")
	}
	s := &PatchSampler{Vols: vols, Patch: patch, ForegroundFraction: fgFraction, Mirror: mirror}
	for _, v := range vols {
		if v.Rows != nil {
			if v.classOf == nil || len(v.Foreground) != len(v.LabelIDs) {
				return nil, fmt.Errorf("patch sampler: volume %s: classes not mapped or foreground not listed", v.ID)
			}
			s.fg = append(s.fg, v.Foreground)
			continue
		}
		if len(v.Labels) != len(v.Image) || len(v.Image) != v.Shape[0]*v.Shape[1]*v.Shape[2] {
			return nil, fmt.Errorf("patch sampler: volume %s: %d image and %d label voxels for shape %v", v.ID, len(v.Image), len(v.Labels), v.Shape)
		}
		_, lists := ForegroundIndex(v.ID, v.Labels, v.Shape, v.known)
		s.fg = append(s.fg, lists)
	}
	return s, nil
}

// maxForeground is how many voxels of each class a volume lists, as nnU-Net stores.
const maxForeground = 10000

// ForegroundIndex lists, for each label value > 0 in ascending order, the voxels (indices
// into the D×H×W labels) that hold it where known (nil: everywhere) says the slice is
// labelled: all of them, or a random subset of maxForeground. The subset is drawn from the
// volume's id alone, so a cache prepared once and a volume indexed in memory agree.
func ForegroundIndex(id string, labels []int32, shape [3]int, known func(z int) bool) (values []int32, lists [][]int32) {
	byValue := map[int32][]int32{}
	plane := shape[1] * shape[2]
	for i, k := range labels {
		if k > 0 && (known == nil || known(i/plane)) {
			byValue[k] = append(byValue[k], int32(i))
		}
	}
	for k := range byValue {
		values = append(values, k)
	}
	slices.Sort(values)
	h := fnv.New64a()
	h.Write([]byte(id))
	r := rand.New(rand.NewSource(int64(h.Sum64())))
	for _, k := range values {
		l := byValue[k]
		if len(l) > maxForeground {
			r.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
			l = l[:maxForeground:maxForeground]
		}
		lists = append(lists, l)
	}
	return values, lists
}

// Sample draws a batch of b patches.
func (s *PatchSampler) Sample(b int, r *rand.Rand) (*PatchBatch, error) {
	n := s.Patch[0] * s.Patch[1] * s.Patch[2]
	out := &PatchBatch{B: b, Patch: s.Patch, Image: make([]float32, b*n), Labels: make([]int32, b*n), Known: make([]float32, b*n)}
	// nnU-Net oversamples the last items of a batch: item i is forced to foreground when
	// i ≥ round(b·(1 − fraction)).
	forceFrom := int(math.Round(float64(b) * (1 - s.ForegroundFraction)))
	var buf rowBuf
	for i := 0; i < b; i++ {
		vi := r.Intn(len(s.Vols))
		lo := s.patchStart(vi, i >= forceFrom, r)
		flip := [3]bool{}
		if s.Mirror {
			for a := range flip {
				flip[a] = r.Intn(2) == 1
			}
		}
		if err := s.copyPatch(out, i, s.Vols[vi], lo, flip, &buf); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// patchStart draws the first voxel of a patch of volume vi, centred on a random foreground
// voxel when force and the volume has one.
func (s *PatchSampler) patchStart(vi int, force bool, r *rand.Rand) [3]int {
	v := s.Vols[vi]
	var lo [3]int
	center := -1
	if force && len(s.fg[vi]) > 0 {
		cls := s.fg[vi][r.Intn(len(s.fg[vi]))]
		center = int(cls[r.Intn(len(cls))])
	}
	plane := v.Shape[1] * v.Shape[2]
	for a := range 3 {
		size, p := v.Shape[a], s.Patch[a]
		// Valid starts keep the patch inside the volume, or centre a smaller volume.
		minLo, maxLo := 0, size-p
		if size < p {
			minLo, maxLo = (size-p)/2, (size-p)/2
		}
		if a == 0 && v.Slices != nil { // FS-SS: the patch must hold an annotated slice
			ks := v.Slices[r.Intn(len(v.Slices))]
			if center >= 0 {
				ks = center / plane
			}
			minLo, maxLo = max(minLo, ks-p+1), min(maxLo, ks)
			if minLo > maxLo {
				minLo, maxLo = ks-p/2, ks-p/2
			}
		}
		switch {
		case center >= 0:
			c := [3]int{center / plane, (center / v.Shape[2]) % v.Shape[1], center % v.Shape[2]}[a]
			lo[a] = min(max(c-p/2, minLo), maxLo)
		default:
			lo[a] = minLo + r.Intn(maxLo-minLo+1)
		}
	}
	return lo
}

// copyPatch copies the patch of v from lo, mirrored along the flip axes, into item i of out.
func (s *PatchSampler) copyPatch(out *PatchBatch, i int, v *SegVolume, lo [3]int, flip [3]bool, buf *rowBuf) error {
	pd, ph, pw := s.Patch[0], s.Patch[1], s.Patch[2]
	base := i * pd * ph * pw
	y0, y1 := max(lo[1], 0), min(lo[1]+ph, v.Shape[1]) // the volume's rows the patch covers
	for z := 0; z < pd; z++ {
		sz := lo[0] + z
		inZ := sz >= 0 && sz < v.Shape[0] && y1 > y0
		var img []float32
		var lab []int32
		if inZ {
			var err error
			if img, lab, err = v.rows(sz, y0, y1-y0, buf); err != nil {
				return err
			}
		}
		for y := 0; y < ph; y++ {
			sy := lo[1] + y
			for x := 0; x < pw; x++ {
				sx := lo[2] + x
				dz, dy, dx := z, y, x
				if flip[0] {
					dz = pd - 1 - z
				}
				if flip[1] {
					dy = ph - 1 - y
				}
				if flip[2] {
					dx = pw - 1 - x
				}
				o := base + (dz*ph+dy)*pw + dx
				if !inZ || sy < y0 || sy >= y1 || sx < 0 || sx >= v.Shape[2] {
					out.Known[o] = boolf(v.Slices == nil)
					continue
				}
				src := (sy-y0)*v.Shape[2] + sx
				out.Image[o] = img[src]
				out.Labels[o] = lab[src]
				out.Known[o] = boolf(v.known(sz))
			}
		}
	}
	return nil
}

func boolf(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// Downsample picks every f-th voxel per axis of a batch of B D×H×W volumes (nearest
// neighbour at integer factors, what torch's "nearest" does from index 0). The phase on each
// axis is the offset of the first known voxel modulo f, so a single known slice (FS-SS) is
// kept at every scale; with everything known it is 0.
func (b *PatchBatch) Downsample(f [3]int) *PatchBatch {
	pd, ph, pw := b.Patch[0], b.Patch[1], b.Patch[2]
	od, oh, ow := pd/f[0], ph/f[1], pw/f[2]
	n, m := pd*ph*pw, od*oh*ow
	out := &PatchBatch{B: b.B, Patch: [3]int{od, oh, ow}, Image: make([]float32, b.B*m), Labels: make([]int32, b.B*m), Known: make([]float32, b.B*m)}
	for i := 0; i < b.B; i++ {
		var phase [3]int
		for o := 0; o < n; o++ {
			if b.Known[i*n+o] > 0 {
				phase = [3]int{(o / (ph * pw)) % f[0], (o / pw % ph) % f[1], (o % pw) % f[2]}
				break
			}
		}
		for z := 0; z < od; z++ {
			for y := 0; y < oh; y++ {
				for x := 0; x < ow; x++ {
					src := i*n + ((z*f[0]+phase[0])*ph+(y*f[1]+phase[1]))*pw + x*f[2] + phase[2]
					dst := i*m + (z*oh+y)*ow + x
					out.Image[dst], out.Labels[dst], out.Known[dst] = b.Image[src], b.Labels[src], b.Known[src]
				}
			}
		}
	}
	return out
}

// SegImage lays img out for a 3D network: windowed with w, in s's slice order (D×H×W),
// standardised.
func SegImage(img *Image, s Slicer, w Window) []float32 {
	v := make([]float32, len(img.Data))
	w.Apply(img.Data, v)
	v = ToSliceOrder(s, v)
	Standardize(v)
	return v
}

// SegShape is the D×H×W shape of s's slice order.
func SegShape(s Slicer) [3]int {
	h, w := s.Size()
	return [3]int{s.Len(), h, w}
}

// Part is the k-th of n equal parts of the batch (B divisible by n): one rank's share of a
// global batch in data-parallel training.
func (b *PatchBatch) Part(k, n int) *PatchBatch {
	if n <= 1 {
		return b
	}
	per := b.B / n
	v := b.Patch[0] * b.Patch[1] * b.Patch[2]
	lo, hi := k*per*v, (k+1)*per*v
	return &PatchBatch{B: per, Patch: b.Patch, Image: b.Image[lo:hi], Labels: b.Labels[lo:hi], Known: b.Known[lo:hi]}
}

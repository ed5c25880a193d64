package data

import (
	"fmt"
	"iter"
	"math"
	"math/rand"
	"sort"
)

// Training pairs for the correspondence flow (§3.2): slices (j, j+k) of one volume, k drawn
// from a set of strides, order swapped at random, both slices and their pseudo-labels
// resized by one random factor and cropped at one random offset — the same geometry for image
// and pseudo-label (the published code crops them independently, misaligning them).

// PairConfig is the sampler's part of the config.
type PairConfig struct {
	Strides     []int
	SwapProb    float64
	ResizeRange [2]int // square side drawn uniformly from [lo, hi]
	Crop        int
	Seed        int64
	PL          bool // sample the pseudo-labels with the slices
	// VolumeGroup > 0 orders an epoch by groups of that many volumes (see Epoch); 0 shuffles
	// its pairs over all volumes.
	VolumeGroup int
}

// PairRef names one pair of an epoch.
type PairRef struct {
	Vol, J, K int
}

// Pair is a sampled, augmented pair: Crop×Crop slices in [0,1] and binary PL masks (any
// id > 0 is foreground; nil without PLs).
type Pair struct {
	Ref            PairRef
	A, B, PLA, PLB []float32
	Swapped        bool
}

// PairSampler enumerates and augments pairs deterministically: the pairs of epoch e and the
// augmentation of its i-th pair depend only on (seed, e, i), so a resumed run sees exactly
// the samples an uninterrupted one would.
type PairSampler struct {
	Vols []TrainVolume
	Cfg  PairConfig
	// Ahead prepares batches before the step asks for them (the zero value: none, each
	// batch built when asked, in the caller's goroutine).
	Ahead Prefetch
}

// NewPairSampler checks the configuration against the volumes.
func NewPairSampler(vols []TrainVolume, cfg PairConfig) (*PairSampler, error) {
	if len(cfg.Strides) == 0 {
		return nil, fmt.Errorf("pair sampler: no strides")
	}
	if cfg.Crop <= 0 || cfg.ResizeRange[0] < cfg.Crop || cfg.ResizeRange[1] < cfg.ResizeRange[0] {
		return nil, fmt.Errorf("pair sampler: resize range %v must be ordered and at least the crop %d", cfg.ResizeRange, cfg.Crop)
	}
	minK := cfg.Strides[0]
	for _, k := range cfg.Strides {
		if k <= 0 {
			return nil, fmt.Errorf("pair sampler: stride %d must be positive", k)
		}
		minK = min(minK, k)
	}
	for _, v := range vols {
		if v.Len <= minK {
			return nil, fmt.Errorf("%s: %d slices, too few for stride %d", v.Source, v.Len, minK)
		}
		if cfg.PL && !v.HasPL {
			return nil, fmt.Errorf("%s: no pseudo-labels", v.Source)
		}
	}
	return &PairSampler{Vols: vols, Cfg: cfg}, nil
}

func (p *PairSampler) rng(parts ...int64) *rand.Rand {
	h := uint64(p.Cfg.Seed) ^ 0x9e3779b97f4a7c15
	for _, x := range parts {
		h ^= uint64(x) + 0x9e3779b97f4a7c15 + h<<6 + h>>2
	}
	return rand.New(rand.NewSource(int64(h)))
}

// Epoch lists epoch e's pairs in their shuffled order: one per start slice j of every volume,
// with k drawn from the strides that fit. With VolumeGroup G the volumes are shuffled and cut
// into groups of G, and the pairs are shuffled within each group: the epoch reads G volumes at
// a time (a bounded set of resident volumes then decodes each once per epoch), at the price
// of batches drawn from fewer volumes.
func (p *PairSampler) Epoch(e int) []PairRef {
	r := p.rng(int64(e), -1)
	strides := append([]int(nil), p.Cfg.Strides...)
	sort.Ints(strides)
	byVol := make([][]PairRef, len(p.Vols))
	var refs []PairRef
	for vi, v := range p.Vols {
		n := v.Len
		for j := 0; j+strides[0] < n; j++ {
			var fit []int
			for _, k := range strides {
				if j+k < n {
					fit = append(fit, k)
				}
			}
			byVol[vi] = append(byVol[vi], PairRef{Vol: vi, J: j, K: fit[r.Intn(len(fit))]})
		}
		refs = append(refs, byVol[vi]...)
	}
	if p.Cfg.VolumeGroup <= 0 {
		r.Shuffle(len(refs), func(a, b int) { refs[a], refs[b] = refs[b], refs[a] })
		return refs
	}
	refs = refs[:0]
	order := r.Perm(len(p.Vols))
	for g := 0; g < len(order); g += p.Cfg.VolumeGroup {
		start := len(refs)
		for _, vi := range order[g:min(len(order), g+p.Cfg.VolumeGroup)] {
			refs = append(refs, byVol[vi]...)
		}
		group := refs[start:]
		r.Shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
	}
	return refs
}

// Sample builds the i-th pair of epoch e (ref from Epoch(e)[i]).
func (p *PairSampler) Sample(e, i int, ref PairRef) (Pair, error) {
	r := p.rng(int64(e), int64(i))
	v := p.Vols[ref.Vol]
	norm, err := v.Slices.Normalizer()
	if err != nil {
		return Pair{}, err
	}
	win := norm.Train(r)
	h, w := v.H, v.W
	side := p.Cfg.ResizeRange[0] + r.Intn(p.Cfg.ResizeRange[1]-p.Cfg.ResizeRange[0]+1)
	oy, ox := r.Intn(side-p.Cfg.Crop+1), r.Intn(side-p.Cfg.Crop+1)
	swap := r.Float64() < p.Cfg.SwapProb
	a, b := ref.J, ref.J+ref.K
	if swap {
		a, b = b, a
	}
	crop := p.Cfg.Crop
	img, lab := make([]float32, h*w), make([]int32, h*w)
	image := func(n int) ([]float32, error) {
		if err := v.Slices.Image(n, img); err != nil {
			return nil, err
		}
		win.Apply(img, img)
		return cropBilinear(img, h, w, side, oy, ox, crop), nil
	}
	labels := func(n int) ([]float32, error) {
		if err := v.Slices.Labels(n, lab); err != nil {
			return nil, err
		}
		return cropNearest(lab, h, w, side, oy, ox, crop), nil
	}
	pair := Pair{Ref: ref, Swapped: swap}
	if pair.A, err = image(a); err == nil {
		pair.B, err = image(b)
	}
	if err == nil && p.Cfg.PL {
		if pair.PLA, err = labels(a); err == nil {
			pair.PLB, err = labels(b)
		}
	}
	return pair, err
}

// srcCoord maps output pixel d of a resize from n to m pixels to the input (half-pixel
// centres, as torch's interpolate with align_corners=False).
func srcCoord(d, n, m int) float64 {
	x := (float64(d)+0.5)*float64(n)/float64(m) - 0.5
	return math.Max(x, 0)
}

// cropBilinear resizes an h×w slice to side×side bilinearly and returns the crop×crop window
// at (oy, ox) — computing only the cropped pixels.
func cropBilinear(s []float32, h, w, side, oy, ox, crop int) []float32 {
	out := make([]float32, crop*crop)
	for y := 0; y < crop; y++ {
		sy := srcCoord(oy+y, h, side)
		y0 := min(int(sy), h-1)
		y1 := min(y0+1, h-1)
		fy := float32(sy - float64(y0))
		for x := 0; x < crop; x++ {
			sx := srcCoord(ox+x, w, side)
			x0 := min(int(sx), w-1)
			x1 := min(x0+1, w-1)
			fx := float32(sx - float64(x0))
			top := s[y0*w+x0]*(1-fx) + s[y0*w+x1]*fx
			bot := s[y1*w+x0]*(1-fx) + s[y1*w+x1]*fx
			out[y*crop+x] = top*(1-fy) + bot*fy
		}
	}
	return out
}

// cropNearest resizes labels by nearest neighbour with half-pixel centres (torch's
// "nearest-exact": floor((d+½)·n/m)), which lines up with the bilinear image — plain
// "nearest" (floor(d·n/m)) shifts labels by up to half an input pixel. The crop comes back as
// a binary foreground mask, so labels stay integral.
func cropNearest(s []int32, h, w, side, oy, ox, crop int) []float32 {
	out := make([]float32, crop*crop)
	for y := 0; y < crop; y++ {
		sy := min(((2*(oy+y)+1)*h)/(2*side), h-1)
		for x := 0; x < crop; x++ {
			sx := min(((2*(ox+x)+1)*w)/(2*side), w-1)
			if s[sy*w+sx] != 0 {
				out[y*crop+x] = 1
			}
		}
	}
	return out
}

// Batch is size pairs stacked: each field holds size·crop·crop values (N×1×crop×crop).
// Err is set when a slice could not be read; the batch is then unusable.
type Batch struct {
	Refs           []PairRef
	A, B, PLA, PLB []float32
	Size, Crop     int
	Err            error
}

// Shard is one rank's share of every epoch in data-parallel training, cut as torch's
// DistributedSampler cuts one: the epoch's seeded order, padded by wrapping around to a
// multiple of World (or, with DropLast, cut down to one), then every World-th pair from
// Rank. The zero Shard (and World 1) is the whole epoch.
type Shard struct {
	Rank, World int
	DropLast    bool
}

// positions are the shard's positions in an epoch order of n pairs.
func (sh Shard) positions(n int) []int {
	world := max(sh.World, 1)
	total := n
	if world > 1 {
		if sh.DropLast {
			total = n / world * world
		} else {
			total = (n + world - 1) / world * world
		}
	}
	var pos []int
	for i := sh.Rank; i < total; i += world {
		pos = append(pos, i%n)
	}
	return pos
}

// Batches cuts the shard of epoch e into batches of size (the last may be smaller) and
// yields each with its index; from is the first batch to produce (for resuming mid-epoch).
// A pair's augmentation is drawn from its position in the whole epoch, so the pairs of a
// step are the same whatever the number of ranks, and whatever p.Ahead prepares early.
func (p *PairSampler) Batches(e, size, from int, sh Shard) iter.Seq2[int, Batch] {
	refs := p.Epoch(e)
	pos := sh.positions(len(refs))
	n := (len(pos) + size - 1) / size
	return Ahead(p.Ahead, from, n, func(b int) Batch {
		return p.batch(e, refs, pos[b*size:min((b+1)*size, len(pos))])
	})
}

// batch stacks the pairs of epoch e at positions pos.
func (p *PairSampler) batch(e int, refs []PairRef, pos []int) Batch {
	batch := Batch{Size: len(pos), Crop: p.Cfg.Crop}
	for _, i := range pos {
		s, err := p.Sample(e, i, refs[i])
		if err != nil {
			return Batch{Err: err}
		}
		batch.Refs = append(batch.Refs, refs[i])
		batch.A = append(batch.A, s.A...)
		batch.B = append(batch.B, s.B...)
		if s.PLA != nil {
			batch.PLA = append(batch.PLA, s.PLA...)
			batch.PLB = append(batch.PLB, s.PLB...)
		}
	}
	return batch
}

// NumBatches is the number of batches of a shard of an epoch.
func (p *PairSampler) NumBatches(e, size int, sh Shard) int {
	return (len(sh.positions(len(p.Epoch(e)))) + size - 1) / size
}

package cache

import (
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/sli2vol/sli2vol/data"
)

// Resident trains without a cache on more volumes than memory holds: each volume is decoded
// from its file when a slice of it is asked for and kept while the decoded volumes fit in
// the budget; beyond it, the least recently used volume not being read is dropped. Only the
// headers are read up front. Random pair order touches volumes at random, so with a budget
// far below the dataset most reads decode a file again: a cache (Prepare) is the fast way;
// this is the way with no disk to spare.
type Resident struct {
	budget int64
	s      Settings
	mu     sync.Mutex // guards the fields of every residentVol below, and used, tick
	used   int64
	tick   int64
	vols   []*residentVol
}

type residentVol struct {
	r     *Resident
	src   Source
	grid  data.Geometry
	bytes int64
	load  sync.Mutex // one decode of a volume at a time
	img   *data.Image
	pl    *data.Labels
	sl    data.Slicer
	norm  *data.Normalizer   // kept when the voxels are dropped
	seg   data.StandardStats // of the test-windowed image (UNETR++), likewise
	last  int64
	pins  int
}

// NewResident reads the headers of srcs' images (and checks their pseudo-labels lie on the
// same grids) and returns their training volumes, decoded on demand within budget bytes.
func NewResident(srcs []Source, s Settings, budget int64) ([]data.TrainVolume, *Resident, error) {
	r, err := newResident(srcs, s, budget)
	if err != nil {
		return nil, nil, err
	}
	out := make([]data.TrainVolume, len(srcs))
	for i, v := range r.vols {
		h, w := v.sl.Size()
		out[i] = data.TrainVolume{ID: v.src.Case.ID, Source: v.src.Case.Image, Len: v.sl.Len(), H: h, W: w, HasPL: v.src.PL != "", Slices: v}
	}
	return out, r, nil
}

// NewResidentSeg is NewResident for UNETR++: volumes with their pseudo-labels as labels,
// read row by row. The class map and the foreground lists need every pseudo-label volume,
// so those are read once now, one at a time (the images are not).
func NewResidentSeg(srcs []Source, s Settings, budget int64) ([]*data.SegVolume, *Resident, error) {
	r, err := newResident(srcs, s, budget)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*data.SegVolume, len(srcs))
	for i, v := range r.vols {
		if v.src.PL == "" {
			return nil, nil, fmt.Errorf("%s: no pseudo-labels", v.src.Case.Image)
		}
		pl, err := data.LoadLabels(v.src.PL, s.Limits)
		if err != nil {
			return nil, nil, err
		}
		shape := data.SegShape(v.sl)
		ids, fg := data.ForegroundIndex(v.src.Case.ID, data.ToSliceOrder(v.sl, pl.Data), shape, nil)
		out[i] = &data.SegVolume{ID: v.src.Case.ID, Shape: shape, LabelIDs: ids, Foreground: fg, Rows: residentRows{v}}
	}
	return out, r, nil
}

func newResident(srcs []Source, s Settings, budget int64) (*Resident, error) {
	r := &Resident{budget: budget, s: s}
	for _, src := range srcs {
		g, err := data.ReadGeometry(src.Case.Image, src.Case.Series, s.Limits)
		if err != nil {
			return nil, err
		}
		if src.PL != "" {
			pg, err := data.ReadGeometry(src.PL, "", s.Limits)
			if err != nil {
				return nil, err
			}
			if err := g.SameGrid(&pg, 1e-3); err != nil {
				return nil, fmt.Errorf("%s: does not lie on the grid of %s: %w", src.PL, src.Case.Image, err)
			}
		}
		sl, err := data.NewSlicer(&g, s.Axis)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Case.Image, err)
		}
		v := &residentVol{r: r, src: src, grid: g, sl: sl, bytes: int64(g.NumVoxels()) * 4}
		if src.PL != "" {
			v.bytes *= 2
		}
		r.vols = append(r.vols, v)
	}
	return r, nil
}

// Resident reports the decoded bytes held now.
func (r *Resident) Resident() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used
}

// acquire returns v's decoded voxels, pinned until release.
func (v *residentVol) acquire() (*data.Image, *data.Labels, error) {
	v.load.Lock()
	defer v.load.Unlock()
	r := v.r
	r.mu.Lock()
	if v.img != nil {
		v.pins++
		r.tick++
		v.last = r.tick
		img, pl := v.img, v.pl
		r.mu.Unlock()
		return img, pl, nil
	}
	// Make room before decoding, so that the peak is the budget, not the budget and one more.
	freed := r.evict(v.bytes)
	r.mu.Unlock()
	if freed {
		debug.FreeOSMemory()
	}
	img, pl, norm, seg, err := v.decode()
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	v.img, v.pl, v.norm, v.seg = img, pl, norm, seg
	v.pins++
	r.tick++
	v.last = r.tick
	r.used += v.bytes
	dropped := r.evict(0)
	r.mu.Unlock()
	if dropped {
		debug.FreeOSMemory() // give the dropped volume back now, so that RSS follows the budget
	}
	return img, pl, nil
}

func (v *residentVol) release() {
	v.r.mu.Lock()
	v.pins--
	v.r.mu.Unlock()
}

// evict drops least recently used, unpinned volumes while the resident bytes and incoming
// would exceed the budget (r.mu held).
func (r *Resident) evict(incoming int64) bool {
	dropped := false
	for r.used+incoming > r.budget {
		var victim *residentVol
		for _, o := range r.vols {
			if o.img != nil && o.pins == 0 && (victim == nil || o.last < victim.last) {
				victim = o
			}
		}
		if victim == nil {
			return dropped
		}
		victim.img, victim.pl = nil, nil
		r.used -= victim.bytes
		dropped = true
	}
	return dropped
}

// decode reads the volume and its pseudo-labels, and decides its normalisation and
// standardisation (from the whole volume, once).
func (v *residentVol) decode() (*data.Image, *data.Labels, *data.Normalizer, data.StandardStats, error) {
	var st data.StandardStats
	img, err := v.src.Case.LoadImage(v.r.s.Limits)
	if err != nil {
		return nil, nil, nil, st, err
	}
	if err := v.grid.SameGrid(&img.Geometry, 1e-3); err != nil {
		return nil, nil, nil, st, fmt.Errorf("%s: changed since training started: %w", v.src.Case.Image, err)
	}
	var pl *data.Labels
	if v.src.PL != "" {
		if pl, err = data.LoadLabels(v.src.PL, v.r.s.Limits); err != nil {
			return nil, nil, nil, st, err
		}
		if err := img.SameGrid(&pl.Geometry, 1e-3); err != nil {
			return nil, nil, nil, st, fmt.Errorf("%s: does not lie on the grid of %s: %w", v.src.PL, v.src.Case.Image, err)
		}
	}
	v.r.mu.Lock()
	norm, st := v.norm, v.seg
	v.r.mu.Unlock()
	if norm == nil {
		if norm, err = data.NewNormalizer(v.r.s.Intensity, img.Data); err != nil {
			return nil, nil, nil, st, err
		}
		st = segStats(img, v.sl, norm.Test())
	}
	return img, pl, norm, st, nil
}

// segStats are data.SegImage's standardisation statistics, summed slice by slice in its order.
func segStats(img *data.Image, sl data.Slicer, test data.Window) data.StandardStats {
	h, w := sl.Size()
	buf := make([]float32, h*w)
	var sum data.StandardSum
	for n := range sl.Len() {
		data.SliceInto(sl, img.Data, n, buf)
		test.Apply(buf, buf)
		sum.Add(buf)
	}
	return sum.Stats()
}

func (v *residentVol) Image(n int, dst []float32) error {
	img, _, err := v.acquire()
	if err != nil {
		return err
	}
	defer v.release()
	data.SliceInto(v.sl, img.Data, n, dst)
	return nil
}

func (v *residentVol) Labels(n int, dst []int32) error {
	_, pl, err := v.acquire()
	if err != nil {
		return err
	}
	defer v.release()
	if pl == nil {
		return fmt.Errorf("%s: no pseudo-labels", v.src.Case.Image)
	}
	data.SliceInto(v.sl, pl.Data, n, dst)
	return nil
}

func (v *residentVol) Normalizer() (*data.Normalizer, error) {
	v.r.mu.Lock()
	norm := v.norm
	v.r.mu.Unlock()
	if norm != nil {
		return norm, nil
	}
	if _, _, err := v.acquire(); err != nil {
		return nil, err
	}
	v.release()
	v.r.mu.Lock()
	defer v.r.mu.Unlock()
	return v.norm, nil
}

// residentRows reads rows of a resident volume for UNETR++: windowed and standardised as
// data.SegImage does, labels as ids.
type residentRows struct{ v *residentVol }

func (r residentRows) Rows(z, y0, n int, img []float32, lab []int32) error {
	v := r.v
	im, pl, err := v.acquire()
	if err != nil {
		return err
	}
	defer v.release()
	v.r.mu.Lock()
	test, st := v.norm.Test(), v.seg
	v.r.mu.Unlock()
	data.RowsInto(v.sl, im.Data, z, y0, n, img)
	test.Apply(img, img)
	for i, x := range img {
		img[i] = st.Apply(x)
	}
	data.RowsInto(v.sl, pl.Data, z, y0, n, lab)
	return nil
}

package data

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// Synthetic CT-like phantoms for demos and tests (not a substitute for real data): a body of
// fat and soft tissue in air, with organ-like structures of distinct ids and HU values —
// smooth blobby shapes with partial-volume edges, a low-frequency texture and noise. Every
// structure begins and ends inside the volume, the kidneys are two pieces on the same slices,
// and the vessel splits into two branches along the slice axis (the discontinuities the
// paper targets). The slice axis is the third array axis (RAS, superior increasing).

// PhantomStructures are the label ids and names phantoms use.
var PhantomStructures = []struct {
	ID   int32
	Name string
}{{1, "liver"}, {2, "kidneys"}, {3, "vessel"}, {4, "spleen"}}

// PhantomSpacing is the voxel size of phantoms in millimetres.
var PhantomSpacing = [3]float64{1.5, 1.5, 2.5}

type blob struct {
	id        int32
	hu        float64
	c, r      [3]float64 // centre and radii in normalised coordinates (0..1 per axis)
	wobble    float64    // boundary perturbation amplitude
	p1, p2    float64    // perturbation phases
	vesselAt  float64    // vessel only: bifurcation height (normalised z)
	isVessel  bool
	zLo, zHi  float64 // vessel extent
	tubeR     float64
	divergeDx float64
}

// Phantom builds one case: intensities in HU and label ids, on a RAS grid of the given shape.
func Phantom(shape [3]int, seed int64) (img []float32, lab []int32, g Geometry) {
	r := rand.New(rand.NewSource(seed))
	g = NewGeometry(shape, PhantomSpacing, [3]float64{-float64(shape[0]) * 0.75, -float64(shape[1]) * 0.75, 0})
	nx, ny, nz := shape[0], shape[1], shape[2]
	n := nx * ny * nz
	img = make([]float32, n)
	lab = make([]int32, n)
	j := func(a float64) float64 { return (r.Float64()*2 - 1) * a }
	s := func() float64 { return 0.85 + 0.3*r.Float64() }
	blobs := []blob{
		{id: 2, hu: 150 + j(10), c: [3]float64{0.3 + j(0.02), 0.66 + j(0.02), 0.33 + j(0.03)}, r: [3]float64{0.06 * s(), 0.075 * s(), 0.15 * s()}},
		{id: 2, hu: 150 + j(10), c: [3]float64{0.7 + j(0.02), 0.66 + j(0.02), 0.36 + j(0.03)}, r: [3]float64{0.06 * s(), 0.075 * s(), 0.15 * s()}},
		{id: 1, hu: 70 + j(8), c: [3]float64{0.36 + j(0.03), 0.44 + j(0.03), 0.56 + j(0.04)}, r: [3]float64{0.17 * s(), 0.15 * s(), 0.27 * s()}},
		{id: 4, hu: 55 + j(8), c: [3]float64{0.7 + j(0.02), 0.5 + j(0.03), 0.62 + j(0.04)}, r: [3]float64{0.08 * s(), 0.1 * s(), 0.15 * s()}},
		{id: 3, hu: 250 + j(20), isVessel: true, c: [3]float64{0.5 + j(0.02), 0.58 + j(0.02), 0}, vesselAt: 0.45 + j(0.05),
			zLo: 0.1 + j(0.03), zHi: 0.88 + j(0.03), tubeR: 0.032 * s(), divergeDx: 0.6 + j(0.1)},
	}
	for i := range blobs {
		blobs[i].wobble = 0.1 + 0.08*r.Float64()
		blobs[i].p1, blobs[i].p2 = r.Float64()*2*math.Pi, r.Float64()*2*math.Pi
	}
	// Texture: three low-frequency waves, amplitude ~8 HU.
	var waves [3][4]float64
	for w := range waves {
		waves[w] = [4]float64{1 + 3*r.Float64(), 1 + 3*r.Float64(), 1 + 2*r.Float64(), r.Float64() * 2 * math.Pi}
	}
	bodyRx, bodyRy := 0.43+j(0.02), 0.34+j(0.02)
	voxel := math.Min(1/float64(nx), 1/float64(ny)) // one voxel in normalised in-plane units
	for k := 0; k < nz; k++ {
		w := (float64(k) + 0.5) / float64(nz)
		rx := bodyRx * (1 + 0.04*math.Sin(2*math.Pi*w))
		for jj := 0; jj < ny; jj++ {
			v := (float64(jj) + 0.5) / float64(ny)
			for i := 0; i < nx; i++ {
				u := (float64(i) + 0.5) / float64(nx)
				idx := i + nx*(jj+ny*k)
				// Body: air outside, a fat rim, soft tissue inside, with partial-volume edges.
				rho := math.Hypot((u-0.5)/rx, (v-0.5)/bodyRy)
				body := edge((rho - 1) * math.Min(rx, bodyRy) / voxel)
				inner := edge((rho - 0.9) * math.Min(rx, bodyRy) / voxel)
				hu := -1000*(1-body) + body*(-90*(1-inner)+25*inner)
				tex := 0.0
				for _, wv := range waves {
					tex += 8 * math.Sin(wv[0]*u*2*math.Pi+wv[1]*v*2*math.Pi+wv[2]*w*2*math.Pi+wv[3]) / 3
				}
				hu += inner * tex
				for b := range blobs {
					f := blobs[b].fraction(u, v, w, voxel)
					if f <= 0 {
						continue
					}
					hu = hu*(1-f) + f*(blobs[b].hu+tex)
					if f >= 0.5 {
						lab[idx] = blobs[b].id
					}
				}
				img[idx] = float32(hu + 12*r.NormFloat64())
			}
		}
	}
	return img, lab, g
}

// edge is the partial-volume fraction inside a boundary at signed distance d voxels.
func edge(d float64) float64 { return math.Max(0, math.Min(1, 0.5-d)) }

func (b *blob) fraction(u, v, w, voxel float64) float64 {
	if b.isVessel {
		if w < b.zLo || w > b.zHi {
			return 0
		}
		// One tube above the bifurcation, two diverging branches below it.
		var d float64
		if w >= b.vesselAt {
			d = math.Hypot(u-b.c[0], v-b.c[1])
		} else {
			off := (b.vesselAt - w) * b.divergeDx
			d = math.Min(math.Hypot(u-b.c[0]-off, v-b.c[1]), math.Hypot(u-b.c[0]+off, v-b.c[1]))
		}
		return edge((d - b.tubeR) / voxel)
	}
	dx, dy, dz := (u-b.c[0])/b.r[0], (v-b.c[1])/b.r[1], (w-b.c[2])/b.r[2]
	rho := math.Sqrt(dx*dx + dy*dy + dz*dz)
	if rho > 1.6 {
		return 0
	}
	bound := 1 + b.wobble*math.Sin(3*math.Atan2(dy, dx)+b.p1)*math.Cos(2.5*dz+b.p2)
	return edge((rho - bound) * math.Min(b.r[0], b.r[1]) / voxel)
}

// WritePhantomDataset writes cases as a Medical Segmentation Decathlon dataset under dir
// (imagesTr/phantom_NNN.nii.gz, labelsTr/..., dataset.json). Case i uses seed·1000+i.
func WritePhantomDataset(dir string, cases int, seed int64, shape [3]int, o WriteOptions) error {
	if cases <= 0 {
		return fmt.Errorf("phantom: --cases %d must be positive", cases)
	}
	if shape[0] < 16 || shape[1] < 16 || shape[2] < 8 {
		return fmt.Errorf("phantom: size %v too small (at least 16×16×8)", shape)
	}
	for _, sub := range []string{"imagesTr", "labelsTr"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("phantom: %w", err)
		}
	}
	type entry struct {
		Image string `json:"image"`
		Label string `json:"label"`
	}
	var training []entry
	for i := 0; i < cases; i++ {
		img, lab, g := Phantom(shape, seed*1000+int64(i))
		name := fmt.Sprintf("phantom_%03d.nii.gz", i)
		if err := WriteImageInt16(filepath.Join(dir, "imagesTr", name), img, &g, o); err != nil {
			return err
		}
		if err := WriteLabels(filepath.Join(dir, "labelsTr", name), lab, &g, o); err != nil {
			return err
		}
		training = append(training, entry{"./imagesTr/" + name, "./labelsTr/" + name})
	}
	labels := map[string]string{"0": "background"}
	for _, s := range PhantomStructures {
		labels[fmt.Sprint(s.ID)] = s.Name
	}
	meta := map[string]any{
		"name": "sli2vol-phantoms", "description": "synthetic CT-like phantoms (sli2vol phantom)",
		"modality": map[string]string{"0": "CT"}, "labels": labels, "numTraining": cases,
		"numTest": 0, "training": training, "test": []string{}, "seed": seed,
	}
	b, _ := json.MarshalIndent(meta, "", "  ")
	p := filepath.Join(dir, "dataset.json")
	if !o.Overwrite {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s: exists; not overwriting it (use --force)", p)
		}
	}
	return atomicfile.WriteFile(p, append(b, '\n'))
}

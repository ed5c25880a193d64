package infer

import (
	"math"
	"sort"
)

// Evaluation metrics, implemented once: Dice overlap and the 95th-percentile Hausdorff
// distance in millimetres (using the voxel spacing).

// Dice is 2|A∩B|/(|A|+|B|) for the voxels equal to id in pred and truth; 1 when both are
// empty.
func Dice(pred, truth []int32, id int32) float64 {
	inter, a, b := overlap(pred, truth, id)
	if a+b == 0 {
		return 1
	}
	return 2 * float64(inter) / float64(a+b)
}

// overlap counts the id voxels of pred∩truth, of pred and of truth.
func overlap(pred, truth []int32, id int32) (inter, a, b int) {
	for i := range pred {
		p, t := pred[i] == id, truth[i] == id
		if p {
			a++
		}
		if t {
			b++
		}
		if p && t {
			inter++
		}
	}
	return inter, a, b
}

// HD95 is the symmetric 95th-percentile Hausdorff distance (mm) between the surfaces of the
// id regions of pred and truth on a grid of the given shape and spacing: the larger of the
// two directed 95th percentiles (as MONAI and medpy compute it). NaN when either is empty.
func HD95(pred, truth []int32, id int32, shape [3]int, spacing [3]float64) float64 {
	a := maskOf(pred, id)
	b := maskOf(truth, id)
	sa, sb := surface(a, shape), surface(b, shape)
	if len(sa) == 0 || len(sb) == 0 {
		return math.NaN()
	}
	da := distanceTo(sb, shape, spacing) // distance of every voxel to b's surface
	db := distanceTo(sa, shape, spacing)
	ab := make([]float64, len(sa))
	for i, v := range sa {
		ab[i] = da[v]
	}
	ba := make([]float64, len(sb))
	for i, v := range sb {
		ba[i] = db[v]
	}
	return math.Max(percentile(ab, 95), percentile(ba, 95))
}

func maskOf(v []int32, id int32) []bool {
	m := make([]bool, len(v))
	for i, x := range v {
		m[i] = x == id
	}
	return m
}

// surface lists voxels of m with a 6-neighbour outside m (or on the grid's border).
func surface(m []bool, shape [3]int) []int {
	nx, ny, nz := shape[0], shape[1], shape[2]
	var out []int
	for k := 0; k < nz; k++ {
		for j := 0; j < ny; j++ {
			for i := 0; i < nx; i++ {
				idx := i + nx*(j+ny*k)
				if !m[idx] {
					continue
				}
				if i == 0 || j == 0 || k == 0 || i == nx-1 || j == ny-1 || k == nz-1 ||
					!m[idx-1] || !m[idx+1] || !m[idx-nx] || !m[idx+nx] || !m[idx-nx*ny] || !m[idx+nx*ny] {
					out = append(out, idx)
				}
			}
		}
	}
	return out
}

// distanceTo is the exact Euclidean distance (mm) of every voxel to the nearest seed voxel,
// by Felzenszwalb and Huttenlocher's separable transform with anisotropic spacing.
func distanceTo(seeds []int, shape [3]int, spacing [3]float64) []float64 {
	n := shape[0] * shape[1] * shape[2]
	d := make([]float64, n)
	for i := range d {
		d[i] = math.Inf(1)
	}
	for _, s := range seeds {
		d[s] = 0
	}
	strides := [3]int{1, shape[0], shape[0] * shape[1]}
	for axis := 0; axis < 3; axis++ {
		size := shape[axis]
		f := make([]float64, size)
		out := make([]float64, size)
		v := make([]int, size)
		z := make([]float64, size+1)
		w2 := spacing[axis] * spacing[axis]
		// Visit every line along axis.
		for start := 0; start < n; start++ {
			if (start/strides[axis])%size != 0 {
				continue
			}
			for q := 0; q < size; q++ {
				f[q] = d[start+q*strides[axis]]
			}
			edt1d(f, out, v, z, w2)
			for q := 0; q < size; q++ {
				d[start+q*strides[axis]] = out[q]
			}
		}
	}
	for i := range d {
		d[i] = math.Sqrt(d[i])
	}
	return d
}

// edt1d computes out[q] = min_p (f[p] + w2·(q−p)²), the lower envelope of parabolas.
func edt1d(f, out []float64, v []int, z []float64, w2 float64) {
	n := len(f)
	k := -1
	for q := 0; q < n; q++ {
		if math.IsInf(f[q], 1) {
			continue
		}
		for k >= 0 {
			p := v[k]
			s := ((f[q] + w2*float64(q*q)) - (f[p] + w2*float64(p*p))) / (2 * w2 * float64(q-p))
			if s <= z[k] {
				k--
				continue
			}
			k++
			v[k], z[k], z[k+1] = q, s, math.Inf(1)
			break
		}
		if k < 0 {
			k = 0
			v[0], z[0], z[1] = q, math.Inf(-1), math.Inf(1)
		}
	}
	if k < 0 {
		for q := range out {
			out[q] = math.Inf(1)
		}
		return
	}
	j := 0
	for q := 0; q < n; q++ {
		for z[j+1] < float64(q) {
			j++
		}
		dq := float64(q - v[j])
		out[q] = f[v[j]] + w2*dq*dq
	}
}

// percentile by linear interpolation (numpy's default).
func percentile(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	x := p / 100 * float64(len(s)-1)
	i := int(x)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (s[i+1]-s[i])*(x-float64(i))
}

package infer

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

func TestWindowStarts(t *testing.T) {
	for _, tc := range []struct {
		size, patch int
		want        string
	}{
		{4, 4, "[0]"},
		{3, 4, "[0]"},
		{10, 4, "[0 2 4 6]"},   // step ≤ 2: ceil(6/2)+1 = 4 windows, 2 apart
		{11, 4, "[0 2 4 5 7]"}, // 5 windows 1.75 apart, rounded
		{12, 8, "[0 4]"},       // exactly one half-patch step
		{13, 8, "[0 3 5]"},     // 3 windows 2.5 apart
	} {
		if got := fmt.Sprint(WindowStarts(tc.size, tc.patch, 0.5)); got != tc.want {
			t.Errorf("WindowStarts(%d, %d) = %s, want %s", tc.size, tc.patch, got, tc.want)
		}
	}
}

// A network whose class-1 logit is its input and class-0 logit is 0 gives every window the
// same probability σ(x) at a voxel, so the Gaussian-weighted average must be σ(x) exactly at
// every voxel of a volume that is not a multiple of the patch (and shorter than it on one
// axis): a voxel missed, misplaced or mis-weighted would show.
func TestSlidingWindowCoversEveryVoxel(t *testing.T) {
	shape := [3]int{7, 19, 13} // D < patch D; H, W not multiples
	r := rand.New(rand.NewSource(1))
	img := make([]float32, shape[0]*shape[1]*shape[2])
	for i := range img {
		img[i] = float32(r.NormFloat64() * 3)
	}
	net := func(x torchx.Tensor) torchx.Tensor {
		return torchx.Cat([]torchx.Tensor{torchx.MulScalar(x, 0), x}, 1)
	}
	calls := 0
	counted := func(x torchx.Tensor) torchx.Tensor {
		calls++
		if s := x.Shape(); s[2] != 8 || s[3] != 8 || s[4] != 8 {
			t.Fatalf("window shape %v", s)
		}
		return net(x)
	}
	for _, mirror := range []bool{false, true} {
		calls = 0
		sw := SlidingWindow{Patch: [3]int{8, 8, 8}, Overlap: 0.5, Mirror: mirror, Batch: 3}
		p, err := sw.Probabilities(img, shape, 2, counted)
		if err != nil {
			t.Fatal(err)
		}
		if s := p.Shape(); s[0] != 2 || s[1] != 7 || s[2] != 19 || s[3] != 13 {
			t.Fatalf("probabilities shape %v", s)
		}
		v := torchx.Float32s(p)
		n := len(img)
		for i, x := range img {
			want := 1 / (1 + math.Exp(-float64(x)))
			if math.Abs(float64(v[n+i])-want) > 1e-5 || math.Abs(float64(v[i])-(1-want)) > 1e-5 {
				t.Fatalf("mirror %v voxel %d: p = %v, want σ(%v) = %v", mirror, i, v[n+i], x, want)
			}
		}
		// Windows: 1 × 4 (19: starts 0,4,7,11) × 3 (13: 0,3,5) = 12, in batches of 3.
		wantCalls := 4
		if mirror {
			wantCalls *= 8
		}
		if calls != wantCalls {
			t.Fatalf("mirror %v: %d network calls, want %d", mirror, calls, wantCalls)
		}
	}
	// A constant network labels every voxel with its class.
	constNet := func(x torchx.Tensor) torchx.Tensor {
		s := x.Shape()
		return torchx.Cat([]torchx.Tensor{torchx.Zeros([]int64{s[0], 2, s[2], s[3], s[4]}, torchx.Float32, "cpu"),
			torchx.Full([]int64{s[0], 1, s[2], s[3], s[4]}, 5, torchx.Float32, "cpu")}, 1)
	}
	lbl, err := SlidingWindow{Patch: [3]int{8, 8, 8}, Overlap: 0.5, Batch: 2}.Predict(img, shape, 3, constNet)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lbl {
		if l != 2 {
			t.Fatalf("voxel %d labelled %d, want 2", i, l)
		}
	}
}

// affineNet is a K-class network whose logits at a window voxel are a_k·x + bias_k(l), l the
// voxel's place in the patch: windows disagree where they overlap and every mirroring
// differs, so a window added twice, skipped, misplaced or mirrored wrong changes the sums.
type affineNet struct {
	k     int
	patch [3]int
	a     []float32 // K
	bias  []float32 // K×patch
	on    map[string][2]torchx.Tensor
}

func newAffineNet(k int, patch [3]int, seed int64) *affineNet {
	r := rand.New(rand.NewSource(seed))
	n := &affineNet{k: k, patch: patch, a: make([]float32, k), bias: make([]float32, k*patch[0]*patch[1]*patch[2]),
		on: map[string][2]torchx.Tensor{}}
	for i := range n.a {
		n.a[i] = float32(r.NormFloat64())
	}
	for i := range n.bias {
		n.bias[i] = float32(r.NormFloat64())
	}
	return n
}

func (n *affineNet) forward(x torchx.Tensor) torchx.Tensor {
	dev := torchx.DeviceOf(x)
	t, ok := n.on[dev]
	if !ok {
		p := n.patch
		// Persisted: the first call runs in a window group's scope, which would free them.
		t = [2]torchx.Tensor{torchx.Persist(torchx.FromFloat32On(n.a, dev, 1, int64(n.k), 1, 1, 1)),
			torchx.Persist(torchx.FromFloat32On(n.bias, dev, 1, int64(n.k), int64(p[0]), int64(p[1]), int64(p[2])))}
		n.on[dev] = t
	}
	return torchx.Add(torchx.Mul(x, t[0]), t[1])
}

// reference is the sliding-window average computed in float64 from the net's closed form,
// without torch: at each voxel, Σ_windows g(l)·mean_mirrorings softmax(a·x + bias(f(l))) over
// Σ_windows g(l), g the Gaussian of σ = patch/8 about patch/2 (floored at 1e-6), f(l) the
// place l mirrors to (the network sees the mirrored window; its output is mirrored back).
func (n *affineNet) reference(img []float32, shape [3]int, mirror bool) []float64 {
	p := n.patch
	var pad, below [3]int
	for a := range 3 {
		pad[a] = max(shape[a], p[a])
		below[a] = (pad[a] - shape[a]) / 2
	}
	x := func(z, y, w int) float64 { // the zero-padded volume
		z, y, w = z-below[0], y-below[1], w-below[2]
		if z < 0 || y < 0 || w < 0 || z >= shape[0] || y >= shape[1] || w >= shape[2] {
			return 0
		}
		return float64(img[(z*shape[1]+y)*shape[2]+w])
	}
	gauss := func(i, size int) float64 {
		d, s := float64(i-size/2), float64(size)/8
		return math.Exp(-d * d / (2 * s * s))
	}
	nflip := 1
	if mirror {
		nflip = 8
	}
	vox := pad[0] * pad[1] * pad[2]
	sum, wsum := make([]float64, n.k*vox), make([]float64, vox)
	logit := make([]float64, n.k)
	for _, z0 := range WindowStarts(pad[0], p[0], 0.5) {
		for _, y0 := range WindowStarts(pad[1], p[1], 0.5) {
			for _, w0 := range WindowStarts(pad[2], p[2], 0.5) {
				for l := 0; l < p[0]*p[1]*p[2]; l++ {
					lz, ly, lw := l/(p[1]*p[2]), l/p[2]%p[1], l%p[2]
					v := ((z0+lz)*pad[1]+y0+ly)*pad[2] + w0 + lw
					g := max(gauss(lz, p[0])*gauss(ly, p[1])*gauss(lw, p[2]), 1e-6)
					wsum[v] += g
					for f := range nflip { // bit 0: W mirrored, bit 1: H, bit 2: D
						fz, fy, fw := lz, ly, lw
						if f&4 != 0 {
							fz = p[0] - 1 - lz
						}
						if f&2 != 0 {
							fy = p[1] - 1 - ly
						}
						if f&1 != 0 {
							fw = p[2] - 1 - lw
						}
						fl := (fz*p[1]+fy)*p[2] + fw
						top, z := math.Inf(-1), 0.0
						for k := range logit {
							logit[k] = float64(n.a[k])*x(z0+lz, y0+ly, w0+lw) + float64(n.bias[k*p[0]*p[1]*p[2]+fl])
							top = max(top, logit[k])
						}
						for k := range logit {
							z += math.Exp(logit[k] - top)
						}
						for k := range logit {
							sum[k*vox+v] += g * math.Exp(logit[k]-top) / z / float64(nflip)
						}
					}
				}
			}
		}
	}
	out := make([]float64, 0, n.k*len(img))
	for k := range n.k {
		for z := range shape[0] {
			for y := range shape[1] {
				for w := range shape[2] {
					v := ((z+below[0])*pad[1]+y+below[1])*pad[2] + w + below[2]
					out = append(out, sum[k*vox+v]/wsum[v])
				}
			}
		}
	}
	return out
}

// The host accumulator (forced by a 1-byte bound) gives bit for bit the probabilities and
// labels of the device accumulator, both agree with the closed-form reference, and the
// final division and argmax in slabs of 2 slices (5 slabs, the last of 1) label every
// voxel where one quotient over the whole volume would. On a machine with CUDA the device
// side is the GPU, the host side its CPU copy.
func TestSlidingWindowHostAccumulator(t *testing.T) {
	shape, patch, k := [3]int{9, 5, 13}, [3]int{4, 8, 6}, 7 // H padded 5 → 8; 4 × 1 × 4 windows
	r := rand.New(rand.NewSource(3))
	img := make([]float32, shape[0]*shape[1]*shape[2])
	for i := range img {
		img[i] = float32(r.NormFloat64() * 2)
	}
	net := newAffineNet(k, patch, 4)
	defer func(b int64) { slabBytes = b }(slabBytes)
	slabBytes = int64(2 * k * shape[1] * shape[2] * 4)
	devices := []string{"cpu"}
	if torchx.CUDAAvailable() {
		devices = append(devices, "cuda")
	}
	for _, dev := range devices {
		for _, mirror := range []bool{false, true} {
			name := fmt.Sprintf("%s mirror %v", dev, mirror)
			sw := SlidingWindow{Patch: patch, Overlap: 0.5, Mirror: mirror, Batch: 3, Device: dev}
			devProbs, devLabels := predictBoth(t, sw, img, shape, k, net.forward, "on "+dev)
			sw.MaxDeviceAccumulatorBytes = 1
			hostProbs, hostLabels := predictBoth(t, sw, img, shape, k, net.forward, "on the host")
			for i := range devProbs {
				if math.Float32bits(devProbs[i]) != math.Float32bits(hostProbs[i]) {
					t.Fatalf("%s: probability %d: device %v, host %v", name, i, devProbs[i], hostProbs[i])
				}
			}
			if fmt.Sprint(devLabels) != fmt.Sprint(hostLabels) {
				t.Fatalf("%s: labels differ:\ndevice %v\nhost   %v", name, devLabels, hostLabels)
			}
			checkAgainstReference(t, name, net.reference(img, shape, mirror), hostProbs, hostLabels)
		}
	}
}

// predictBoth runs Probabilities and Predict, checks the placement line names where, and
// returns the probabilities (K×D×H×W) and labels.
func predictBoth(t *testing.T, sw SlidingWindow, img []float32, shape [3]int, k int, net PatchNet, where string) ([]float32, []int32) {
	t.Helper()
	var log bytes.Buffer
	sw.Log = &log
	p, err := sw.Probabilities(img, shape, k, net)
	if err != nil {
		t.Fatal(err)
	}
	lbl, err := sw.Predict(img, shape, k, net)
	if err != nil {
		t.Fatal(err)
	}
	if len(lbl) != len(img) {
		t.Fatalf("%d labels for %d voxels", len(lbl), len(img))
	}
	if !strings.Contains(log.String(), "sliding window: 7×9×8×13 sum "+where) {
		t.Fatalf("placement line %q does not say %q", log.String(), where)
	}
	if s := p.Shape(); s[0] != int64(k) || s[1] != int64(shape[0]) || s[2] != int64(shape[1]) || s[3] != int64(shape[2]) {
		t.Fatalf("probabilities shape %v", s)
	}
	return torchx.Float32s(p), lbl
}

// checkAgainstReference: probabilities within float32 rounding of the float64 reference, and
// the labels its argmax wherever the two best classes are not within rounding of each other
// (which must be most voxels, with several classes used, for the check to mean anything).
func checkAgainstReference(t *testing.T, name string, ref []float64, probs []float32, labels []int32) {
	t.Helper()
	n := len(labels)
	if len(ref) != len(probs) {
		t.Fatalf("%s: %d probabilities, reference %d", name, len(probs), len(ref))
	}
	for i, v := range probs {
		if math.Abs(float64(v)-ref[i]) > 1e-5 {
			t.Fatalf("%s: probability %d = %v, reference %v", name, i, v, ref[i])
		}
	}
	decided, used := 0, map[int]bool{}
	for i, l := range labels {
		best, second := -1, -1
		for c := 0; c*n < len(ref); c++ {
			if best < 0 || ref[c*n+i] > ref[best*n+i] {
				best, second = c, best
			} else if second < 0 || ref[c*n+i] > ref[second*n+i] {
				second = c
			}
		}
		if ref[best*n+i]-ref[second*n+i] > 1e-4 {
			decided++
			if int(l) != best {
				t.Fatalf("%s: voxel %d labelled %d, reference %d", name, i, l, best)
			}
		}
		used[int(l)] = true
	}
	if decided < n*9/10 || len(used) < 3 {
		t.Fatalf("%s: only %d of %d voxels decided, %d classes used: a weak check", name, decided, n, len(used))
	}
}

// Where the sums go and what the log line says, at the sizes (nothing is allocated).
func TestSlidingWindowAccumulatorPlacement(t *testing.T) {
	sw := SlidingWindow{Patch: [3]int{64, 128, 128}, Device: "cuda", MaxDeviceAccumulatorBytes: 4e9}
	for _, tc := range []struct {
		shape [3]int
		bound int64
		want  string
	}{
		{[3]int{200, 256, 256}, 4e9, "42×200×256×256 sum on cuda (within the 4.00 GB bound): 2.25 GB; labels in 6-slice slabs (66.1 MB each)"},
		{[3]int{300, 512, 512}, 4e9, "42×300×512×512 sum on the host (over the 4.00 GB bound): 13.53 GB; labels in 1-slice slabs (44.0 MB each)"},
		{[3]int{300, 512, 512}, 0, "42×300×512×512 sum on cuda: 13.53 GB; labels in 1-slice slabs (44.0 MB each)"},
		{[3]int{40, 100, 256}, 4e9, "42×64×128×256 sum on cuda (within the 4.00 GB bound): 360.7 MB"}, // padded up to the patch
	} {
		sw.MaxDeviceAccumulatorBytes = tc.bound
		if got := sw.Accumulator(tc.shape, 42).String(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%v, bound %d: %q, want %q", tc.shape, tc.bound, got, tc.want)
		}
	}
}

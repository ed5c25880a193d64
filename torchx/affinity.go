package torchx

// #include "torchx.h"
import "C"

// Correlation is the local affinity logit of Sli2Vol (Eq. 2 before its softmax):
// out[b, d, y, x] = Σ_c q[b,c,y,x]·k[b,c,y+dy,x+dx] over the (2R+1)² displacements
// d = (dy+R)(2R+1) + (dx+R), zero outside the slice. q, k: B×C×H×W → B×(2R+1)²×H×W.
// Differentiable in q and k; memory O(B·(2R+1)²·H·W).
func Correlation(q, k Tensor, radius int) Tensor {
	return call1([]Tensor{q, k}, func(out *C.TxTensor) C.TxErr {
		return C.tx_correlation(h(q), h(k), C.int64_t(radius), out)
	})
}

// Aggregate applies an affinity to a map (Eq. 4): out[b,c,y,x] = Σ_d A[b,d,y,x]·m[b,c,y+dy,x+dx],
// zero outside the slice. A: B×(2R+1)²×H×W, m: B×C×H×W. Differentiable in A and m.
func Aggregate(a, m Tensor, radius int) Tensor {
	return call1([]Tensor{a, m}, func(out *C.TxTensor) C.TxErr {
		return C.tx_aggregate(h(a), h(m), C.int64_t(radius), out)
	})
}

// AffinityStrategy picks how Correlation and Aggregate (and their gradients) are computed.
// Both give the same values; they differ in speed and temporary memory.
type AffinityStrategy int

const (
	// AffinityAuto (the default): AffinityRows on CUDA for feature maps of up to 2^23
	// elements (B·C·H·W), AffinityShifts otherwise (measurements in csrc/affinity.cc).
	AffinityAuto AffinityStrategy = C.TX_AFFINITY_AUTO
	// AffinityRows: one window row at a time, a few large ops per row and a
	// B×C×H×W×(2R+1) temporary. A GPU on small maps, bound by kernel launches, wants this.
	AffinityRows AffinityStrategy = C.TX_AFFINITY_ROWS
	// AffinityShifts: one displacement at a time, (2R+1)² rounds of small ops and one
	// B×C×H×W temporary. The CPU, bound by memory bandwidth, and a GPU on large maps want this.
	AffinityShifts AffinityStrategy = C.TX_AFFINITY_SHIFTS
	// AffinityUnfold: the reference's formulation (F.unfold, a product and a sum, ATen's own
	// autograd): the fewest kernel launches and a B×C×(2R+1)²×H×W temporary (5.7 GB for one
	// 128-channel 256² map at R=6). Never chosen by auto; there to measure the others against.
	AffinityUnfold AffinityStrategy = C.TX_AFFINITY_UNFOLD
)

// SetAffinityStrategy sets the strategy for the whole process (tests and benchmarks compare them).
func SetAffinityStrategy(s AffinityStrategy) {
	C.tx_set_affinity_strategy(C.TxAffinityStrategy(s))
}

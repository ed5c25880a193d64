package infer

import (
	"fmt"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/torchx"
)

// The chunked chain (issue #19): the paper's test stage (estimate none) and estimate model
// feed slice features that do not depend on the carried mask, so a chunk of slices is encoded
// in one batch and their affinities computed in one call; only Eq. 4 and the re-encoding of
// the mask (the argmax as a one-hot) run slice by slice, on the device. The stop rule reads
// one area vector per chunk, the labels come to the host once per chunk, and a chunk that
// overran the stop slice is rolled back to it. With estimate propagated the image half of
// the features is batched and the PL half is encoded slice by slice.
//
// It computes what the per-slice chain (chain) computes, in the same order per slice:
// batched convolutions may round differently, nothing else differs.

// The working set of one chunk when infer.encode_batch is 0 (auto): the encoder's
// activations, features, affinities and masks of the chunk's slices. A GPU gains from large
// chunks (fewer, larger kernel launches): 2 GiB keeps a 512² chunk at 3 slices and a 256² one
// at 13. A CPU gains nothing from batching (its convolutions are compute-bound already; see
// BENCHMARKS.md), so a chunk there only amortises the per-slice bookkeeping: 256 MiB.
const (
	encodeBudgetGPU = 2 << 30
	encodeBudgetCPU = 256 << 20
)

// chunkSize is the number of slices encoded together.
func (g *propagation) chunkSize() int {
	if g.EncodeBatch > 0 {
		return g.EncodeBatch
	}
	hw := int64(g.h) * int64(g.w)
	if g.Resize > 0 {
		hw = max(hw, int64(g.Resize)*int64(g.Resize))
	}
	// Per slice, float32: ~4 live encoder activations of 64 channels, query features (≤ 2×64
	// channels with a PL half), the (2R+1)² affinity for R ≤ 7, the propagated probabilities
	// and their one-hot (2K).
	perSlice := (4*64 + 128 + 225 + 2*g.classes) * hw * 4
	budget := int64(encodeBudgetGPU)
	if g.Device == "cpu" || g.Device == "" {
		budget = encodeBudgetCPU
	}
	return int(max(1, min(64, budget/perSlice)))
}

// chunked is the chain of the chunked path (same contract as chain).
func (g *propagation) chunked(ann *data.Annotation, dir, stop int, emit emitFunc) int {
	l := g.firstChunked(ann)
	for n := ann.Slice + dir; n != stop; {
		if g.cancelled() {
			return n
		}
		b := min(g.batch, dir*(stop-n))
		var end int
		var ok bool
		if l, end, ok = g.scopedChunk(l, func() (link, int, bool) { return g.chunk(l, n, dir, b, emit) }); !ok {
			g.advance(dir*(stop-end)-1, "") // the stop slice itself was counted by chunk
			return end
		}
		n += dir * b
	}
	return stop
}

// firstChunked is the annotated slice's link; its key is the image half alone with
// estimate propagated (the PL half is added per step, from the mask the step carries).
func (g *propagation) firstChunked(ann *data.Annotation) link {
	mask := g.oneHot(ann.Mask)
	if g.Resize > 0 {
		mask = g.hard(g.toWork(mask))
	}
	return link{mask: mask, key: g.featuresOf([]int{ann.Slice})}
}

// chunk carries l over the b slices n, n+dir, …: it returns the link after the last one, or
// the stop slice and false where the mask vanished.
func (g *propagation) chunk(l link, n, dir, b int, emit emitFunc) (link, int, bool) {
	idx := make([]int, b)
	for i := range idx {
		idx[i] = n + i*dir
	}
	f := g.featuresOf(idx)
	var aff torchx.Tensor
	if g.Estimate != configs.EstimatePropagated { // every key is known: one affinity call
		aff = g.Model.Affinity(f, torchx.Cat([]torchx.Tensor{l.key, torchx.Narrow(f, 0, 0, int64(b-1))}, 0))
	}
	mask, key := l.mask, l.key
	probs, labs := make([]torchx.Tensor, b), make([]torchx.Tensor, b)
	for i := range b {
		query := torchx.Narrow(f, 0, int64(i), 1)
		a := torchx.Tensor{}
		if aff.T != nil {
			a = torchx.Narrow(aff, 0, int64(i), 1)
		} else { // Eq. 4's PL half: the same estimate beside the key's and the query's image half
			plf := g.Model.PLFeatures(g.foreground(mask))
			a = g.Model.Affinity(torchx.Cat([]torchx.Tensor{query, plf}, 1), torchx.Cat([]torchx.Tensor{key, plf}, 1))
		}
		probs[i] = g.Model.Propagate(a, mask)
		labs[i] = torchx.Argmax(g.toNative(probs[i]), 1, false)
		mask, key = g.hard(probs[i]), query
	}
	kept, stopped := g.emitChunk(idx, probs, torchx.Cat(labs, 0), emit)
	if stopped {
		return link{}, idx[kept], false
	}
	return link{mask: mask, key: torchx.Clone(key)}, 0, true
}

// emitChunk reads the chunk's areas (one transfer), hands the slices before the first one
// below MinArea to emit with their labels (one more), and reports how many it kept and
// whether the chain stops.
func (g *propagation) emitChunk(idx []int, probs []torchx.Tensor, labs torchx.Tensor, emit emitFunc) (int, bool) {
	areas := torchx.Int64s(torchx.To(torchx.Sum(torchx.GtScalar(labs, 0), false, 1, 2), "cpu", torchx.Int64))
	kept := len(idx)
	for i, a := range areas {
		if a < int64(max(1, g.MinArea)) {
			kept = i
			break
		}
	}
	if kept > 0 {
		hw := g.h * g.w
		host := g.hostLabels(torchx.Narrow(labs, 0, 0, int64(kept)))
		for i := range kept {
			mask := make([]int32, hw)
			for j, c := range host[i*hw : (i+1)*hw] {
				if c > 0 {
					mask[j] = g.ids[c-1]
				}
			}
			g.advance(1, fmt.Sprintf("slice %d, %d px", idx[i], areas[i]))
			emit(idx[i], probs[i], mask)
		}
	}
	if kept < len(idx) {
		g.advance(1, fmt.Sprintf("slice %d, %d px", idx[kept], areas[kept]))
		return kept, true
	}
	return kept, false
}

// hostLabels downloads one-hot channel indices, as bytes when the classes fit in one.
func (g *propagation) hostLabels(labs torchx.Tensor) []int64 {
	if g.classes > 255 {
		return torchx.Int64s(torchx.To(labs, "cpu", torchx.Int64))
	}
	b := torchx.Uint8s(torchx.To(labs, "cpu", torchx.Uint8))
	out := make([]int64, len(b))
	for i, v := range b {
		out[i] = int64(v)
	}
	return out
}

// featuresOf encodes slices idx in one batch: their own features, and with estimate model
// those of the model's prediction beside them. With estimate propagated only the image half.
func (g *propagation) featuresOf(idx []int) torchx.Tensor {
	hw := g.h * g.w
	px := make([]float32, len(idx)*hw)
	for i, n := range idx {
		v := px[i*hw : (i+1)*hw]
		data.SliceInto(g.s, g.img.Data, n, v)
		g.win.Apply(v, v)
	}
	x := g.toWork(torchx.MulScalar(tensors.SlicesOn(px, len(idx), g.h, g.w, g.Device), g.Scale))
	f := g.Model.SliceFeatures(x)
	if g.Estimate != configs.EstimateModel {
		return f
	}
	est := make([]torchx.Tensor, len(idx))
	for i, n := range idx {
		est[i] = g.modelEstimate(n)
	}
	return torchx.Cat([]torchx.Tensor{f, g.Model.PLFeatures(torchx.Cat(est, 0))}, 1)
}

// scopedChunk is scoped for a chunk: its temporaries go with it, the link it returns passes
// to the outer scope and the link it replaces is freed.
func (g *propagation) scopedChunk(prev link, step func() (link, int, bool)) (link, int, bool) {
	var next link
	end, ok := 0, false
	kept := torchx.TidyAll(func() []torchx.Tensor {
		if next, end, ok = step(); !ok {
			return nil
		}
		return []torchx.Tensor{next.mask, next.key}
	})
	if ok {
		freeReplaced([]torchx.Tensor{prev.mask, prev.key}, kept)
		torchx.GC()
	}
	return next, end, ok
}

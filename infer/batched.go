package infer

import (
	"fmt"
	"strconv"
	"strings"

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

// The working set of one chunk when infer.encode_batch is 0 (auto) on a GPU: the encoder's
// activations, features, affinities and masks of the chunk's slices. A GPU gains from large
// chunks (fewer, larger kernel launches): a quarter of its free memory, at most 8 GiB (2 GiB
// when it cannot be asked). On the CPU auto is the per-slice path: there the convolutions are
// compute-bound already, and batching them measured slower (0.89× the per-slice path's
// slices/s at 128², 2 threads) for three times the memory (BENCHMARKS.md).
const (
	encodeBudgetGPU    = 2 << 30
	encodeBudgetGPUMax = 8 << 30
)

// chunkSize is the number of slices encoded together; 0: the per-slice path.
func (g *propagation) chunkSize() int {
	if g.EncodeBatch > 0 {
		return g.EncodeBatch
	}
	if !strings.HasPrefix(g.Device, "cuda") {
		return 0
	}
	hw := int64(g.h) * int64(g.w)
	hw = max(hw, int64(g.wh)*int64(g.ww))
	// Per slice, float32: ~4 live encoder activations of 64 channels, query features (≤ 2×64
	// channels with a PL half), the (2R+1)² affinity for R ≤ 7, the propagated probabilities
	// and their one-hot (2K).
	perSlice := (4*64 + 128 + 225 + 2*g.classes) * hw * 4
	return int(max(1, min(64, deviceBudget(g.Device)/perSlice)))
}

// deviceBudget is the automatic chunk working set on a GPU ("cuda", "cuda:N").
func deviceBudget(device string) int64 {
	index := 0
	if s, ok := strings.CutPrefix(device, "cuda:"); ok {
		index, _ = strconv.Atoi(s)
	}
	free, _, err := torchx.CUDAMemInfo(index)
	if err != nil || free <= 0 {
		return encodeBudgetGPU
	}
	return min(free/4, encodeBudgetGPUMax)
}

// streamsAtOnce chains run in lockstep on the chunked path: their slices share the encoder's
// batch and the affinity call, and each step carries all their masks in one Propagate.
const streamsAtOnce = 2

// stream is one chain of the propagation: from ann towards dir, up to (not including) stop.
type stream struct {
	ann       *data.Annotation
	dir, stop int
	emit      emitFunc
	next      int  // the next slice to propagate
	l         link // what the last slice hands on
	done      bool
}

// chunked runs chains in lockstep, a chunk of slices of each per round, until every one has
// stopped or reached its end (same contract per chain as chain).
func (g *propagation) chunked(chains []*stream) {
	for _, c := range chains {
		c.next = c.ann.Slice + c.dir
		c.done = c.next == c.stop
		if !c.done {
			c.l = tensorPair(torchx.TidyAll(func() []torchx.Tensor { l := g.firstChunked(c.ann); return []torchx.Tensor{l.mask, l.key} })).link()
		}
	}
	per := max(1, g.batch/len(chains))
	for {
		var live []*stream
		for _, c := range chains {
			if !c.done {
				live = append(live, c)
			}
		}
		if len(live) == 0 || g.cancelled() {
			return
		}
		g.scopedRound(live, func() { g.round(live, per) })
	}
}

// tensorPair is a TidyAll result of [mask, key].
type tensorPair []torchx.Tensor

func (t tensorPair) link() link { return link{mask: t[0], key: t[1]} }

// firstChunked is the annotated slice's link; its key is the image half alone with
// estimate propagated (the PL half is added per step, from the mask the step carries).
func (g *propagation) firstChunked(ann *data.Annotation) link {
	return link{mask: g.carried(ann.Mask), key: g.featuresOf([]int{ann.Slice})}
}

// round carries each live chain over its next (up to) per slices: one encoder batch and one
// affinity call for all of them, then one Propagate per step for all chains still in it.
func (g *propagation) round(live []*stream, per int) {
	idx := make([][]int, len(live))
	var all []int
	for k, c := range live {
		for n := c.next; n != c.stop && len(idx[k]) < per; n += c.dir {
			idx[k] = append(idx[k], n)
		}
		all = append(all, idx[k]...)
	}
	f := g.featuresOf(all)
	feats, affs := g.chunkAffinities(live, idx, f)
	probs, labs, masks, keys := g.steps(live, idx, feats, affs)
	for k, c := range live {
		kept, stopped := g.emitChunk(idx[k], probs[k], torchx.Cat(labs[k], 0), c.emit)
		if stopped {
			g.advance(c.dir*(c.stop-idx[k][kept])-1, "") // the stop slice itself was counted
			c.done = true
			continue
		}
		c.next = idx[k][len(idx[k])-1] + c.dir
		c.done = c.next == c.stop
		c.l = link{mask: torchx.Clone(masks[k]), key: torchx.Clone(keys[k])}
	}
}

// chunkAffinities splits the round's features per chain and, where every key is known
// (estimates none and model), computes all the round's affinities in one call: slice i's key
// is slice i−1's query, the first one's the chain's carried key.
func (g *propagation) chunkAffinities(live []*stream, idx [][]int, f torchx.Tensor) (feats, affs []torchx.Tensor) {
	feats, affs = make([]torchx.Tensor, len(live)), make([]torchx.Tensor, len(live))
	var keys []torchx.Tensor
	off := int64(0)
	for k, c := range live {
		b := int64(len(idx[k]))
		feats[k] = torchx.Narrow(f, 0, off, b)
		keys = append(keys, c.l.key, torchx.Narrow(feats[k], 0, 0, b-1))
		off += b
	}
	if g.Estimate == configs.EstimatePropagated {
		return feats, nil
	}
	aff := g.Model.Affinity(f, torchx.Cat(keys, 0))
	off = 0
	for k := range live {
		b := int64(len(idx[k]))
		affs[k] = torchx.Narrow(aff, 0, off, b)
		off += b
	}
	return feats, affs
}

// steps is Eq. 4 slice by slice for all chains at once: step i carries the masks of the
// chains that have an i-th slice this round. It returns per chain the probabilities and
// label maps of its slices, and the mask and key it ends with.
func (g *propagation) steps(live []*stream, idx [][]int, feats, affs []torchx.Tensor) (probs, labs [][]torchx.Tensor, masks, keys []torchx.Tensor) {
	probs, labs = make([][]torchx.Tensor, len(live)), make([][]torchx.Tensor, len(live))
	masks, keys = make([]torchx.Tensor, len(live)), make([]torchx.Tensor, len(live))
	for k, c := range live {
		masks[k], keys[k] = c.l.mask, c.l.key
	}
	for i := 0; ; i++ {
		var in []int // the chains in step i
		for k := range live {
			if i < len(idx[k]) {
				in = append(in, k)
			}
		}
		if len(in) == 0 {
			return probs, labs, masks, keys
		}
		var a, m, q []torchx.Tensor
		for _, k := range in {
			q = append(q, torchx.Narrow(feats[k], 0, int64(i), 1))
			m = append(m, masks[k])
			if affs != nil {
				a = append(a, torchx.Narrow(affs[k], 0, int64(i), 1))
			}
		}
		var aff torchx.Tensor
		if affs != nil {
			aff = torchx.Cat(a, 0)
		} else { // Eq. 4's PL half: the same estimate beside the key's and the query's image half
			plf := g.Model.PLFeatures(g.foreground(torchx.Cat(m, 0)))
			aff = g.Model.Affinity(torchx.Cat([]torchx.Tensor{torchx.Cat(q, 0), plf}, 1),
				torchx.Cat([]torchx.Tensor{torchx.Cat(pick(keys, in), 0), plf}, 1))
		}
		p := g.Model.Propagate(aff, torchx.Cat(m, 0))
		lab, hard := torchx.Argmax(g.toNative(p), 1, false), g.hard(p)
		for j, k := range in {
			probs[k] = append(probs[k], torchx.Narrow(p, 0, int64(j), 1))
			labs[k] = append(labs[k], torchx.Narrow(lab, 0, int64(j), 1))
			masks[k], keys[k] = torchx.Narrow(hard, 0, int64(j), 1), q[j]
		}
	}
}

// pick is ts at the indices in.
func pick(ts []torchx.Tensor, in []int) []torchx.Tensor {
	out := make([]torchx.Tensor, len(in))
	for j, k := range in {
		out[j] = ts[k]
	}
	return out
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

// scopedRound runs one round in its own scope: its temporaries go with it, the links the
// chains carry on pass to the outer scope, and the links they replace are freed.
func (g *propagation) scopedRound(live []*stream, round func()) {
	var before []torchx.Tensor
	for _, c := range live {
		before = append(before, c.l.mask, c.l.key)
	}
	kept := torchx.TidyAll(func() []torchx.Tensor {
		round()
		var out []torchx.Tensor
		for _, c := range live {
			if !c.done { // a chain that stopped or ended needs its link no more
				out = append(out, c.l.mask, c.l.key)
			}
		}
		return out
	})
	freeReplaced(before, kept)
	for _, c := range live {
		if c.done {
			c.l = link{}
		}
	}
	torchx.GC()
}

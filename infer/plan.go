package infer

import (
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/torchx"
)

// Several annotated slices (beyond the paper, which annotates one): the user corrects a slice
// and propagates again. The rule:
//   - below the lowest annotated slice and above the highest, the mask is carried from that
//     slice outwards, as with a single annotation (stopping when it vanishes);
//   - between two annotated slices a < b, one chain runs up from a and one down from b, each
//     stopping at the other annotation or where its mask vanishes (a vanished chain counts as
//     background from there on); slice n takes the argmax of the distance-weighted mean of
//     the two chains' class probabilities, w_a = (b−n)/(b−a), w_b = (n−a)/(b−a), so the
//     nearer annotation weighs more and each annotation is reproduced on its own slice.
// The two chains' probabilities for the slices between a and b are held on the host
// (2·K·H·W float32 per slice) until the second chain ends.

// segment is one piece of the plan: a chain from one annotation outwards (edge) or the
// interval between two neighbouring annotations.
type segment struct {
	from, to *data.Annotation // to == nil: an edge chain from `from` towards dir
	dir      int
}

// planChains splits the volume among sorted annotations.
func planChains(anns []*data.Annotation) []segment {
	plan := []segment{{from: anns[0], dir: -1}}
	for i := 1; i < len(anns); i++ {
		if anns[i].Slice-anns[i-1].Slice > 1 {
			plan = append(plan, segment{from: anns[i-1], to: anns[i], dir: +1})
		}
	}
	return append(plan, segment{from: anns[len(anns)-1], dir: +1})
}

// planLength is the number of chain steps the plan takes at most in a volume of n slices
// (the progress total): slices between two annotations are visited twice.
func planLength(plan []segment, n int) int {
	total := 0
	for _, p := range plan {
		switch {
		case p.to != nil:
			total += 2 * (p.to.Slice - p.from.Slice - 1)
		case p.dir < 0:
			total += p.from.Slice
		default:
			total += n - 1 - p.from.Slice
		}
	}
	return total
}

// run propagates every chain of the plan, then blends the intervals. The chains are
// independent of each other: the per-slice path runs them one after the other, the chunked
// path two at a time in one batch (both directions from an annotation at once). Auto on the
// CPU (chunkSize 0) is the per-slice path.
func (g *propagation) run(plan []segment) {
	var chains []*stream
	var blends []func()
	for _, p := range plan {
		switch {
		case p.to != nil:
			up, down, blend := g.interval(p.from, p.to)
			chains, blends = append(chains, up, down), append(blends, blend)
		case p.dir < 0:
			chains = append(chains, &stream{ann: p.from, dir: -1, stop: -1, emit: g.write})
		default:
			chains = append(chains, &stream{ann: p.from, dir: +1, stop: g.s.Len(), emit: g.write})
		}
	}
	if g.PerSlice || g.Verify || g.batch == 0 {
		for _, c := range chains {
			if g.cancelled() {
				return
			}
			g.chain(c.ann, c.dir, c.stop, c.emit)
		}
	} else {
		for i := 0; i < len(chains); i += streamsAtOnce {
			g.chunked(chains[i:min(len(chains), i+streamsAtOnce)])
		}
	}
	if g.err != nil {
		return
	}
	for _, b := range blends {
		b()
	}
}

// write stores a propagated slice's labels in the result.
func (g *propagation) write(n int, _ torchx.Tensor, mask []int32) {
	data.SetSlice(g.s, g.res.Labels, n, mask)
	g.res.First, g.res.Last = min(g.res.First, n), max(g.res.Last, n)
}

// interval is the two chains that fill the slices strictly between annotations a and b, and
// the distance-weighted blend of what they carried, to run after both.
func (g *propagation) interval(a, b *data.Annotation) (up, down *stream, blend func()) {
	gap := b.Slice - a.Slice
	pu, pd := make([][]float32, gap-1), make([][]float32, gap-1)
	keep := func(into [][]float32) emitFunc {
		return func(n int, probs torchx.Tensor, _ []int32) {
			into[n-a.Slice-1] = torchx.Float32s(g.toNative(probs))
		}
	}
	up = &stream{ann: a, dir: +1, stop: b.Slice, emit: keep(pu)}
	down = &stream{ann: b, dir: -1, stop: a.Slice, emit: keep(pd)}
	return up, down, func() {
		for k := range pu {
			n := a.Slice + 1 + k
			wb := float32(n-a.Slice) / float32(gap)
			if mask, any := g.blend(pu[k], pd[k], 1-wb, wb); any {
				g.write(n, torchx.Tensor{}, mask)
			}
		}
	}
}

// blend is the argmax of wa·pa + wb·pb per pixel (K×H×W probabilities; nil: background
// everywhere) as label ids, and whether any pixel is labelled. Ties go to the lower channel.
func (g *propagation) blend(pa, pb []float32, wa, wb float32) ([]int32, bool) {
	hw := g.h * g.w
	prob := func(p []float32, c, i int) float32 {
		switch {
		case p != nil:
			return p[c*hw+i]
		case c == 0:
			return 1
		}
		return 0
	}
	mask := make([]int32, hw)
	any := false
	for i := range hw {
		best, arg := float32(-1), 0
		for c := range int(g.classes) {
			if v := wa*prob(pa, c, i) + wb*prob(pb, c, i); v > best {
				best, arg = v, c
			}
		}
		if arg > 0 {
			mask[i], any = g.ids[arg-1], true
		}
	}
	return mask, any
}

package models

import (
	"fmt"

	"github.com/sli2vol/sli2vol/torchx"
)

// Interpolate moves dst's weights part of the way back to from's, in place: every floating
// parameter and buffer becomes w·dst + (1−w)·from; counters (integer buffers such as
// num_batches_tracked) keep dst's. dst and from must be the same architecture (same state-dict
// names and shapes); from is not changed.
//
// This is a weight-space ensemble of a fine-tuned network and the one it started from
// (WiSE-FT, Wortsman et al., CVPR 2022): test-time adaptation uses it to keep what the
// training set taught while taking part of what the test volume did.
func Interpolate(dst, from Module, w float64) error {
	if !(w >= 0 && w <= 1) {
		return fmt.Errorf("interpolate: weight %g is outside [0, 1]", w)
	}
	own, src := StateDict(dst), StateDict(from)
	if err := fits(own, src); err != nil {
		return fmt.Errorf("interpolate: %w", err)
	}
	return torchx.Try(func() {
		for n, t := range own {
			if dt := torchx.DTypeOf(t); dt != torchx.Float32 && dt != torchx.Float64 && dt != torchx.Float16 {
				continue
			}
			torchx.TidyDo(func() {
				torchx.NoGrad(func() {
					// t + (1−w)(from − t): an entry equal in both stays bit-identical.
					torchx.CopyInto(t, torchx.Add(t, torchx.MulScalar(torchx.Sub(src[n], t), 1-w)))
				})
			})
		}
	})
}

package train

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/sli2vol/sli2vol/internal/progress"
	"github.com/sli2vol/sli2vol/torchx"
)

// SmokeResult is what a smoke run measured.
type SmokeResult struct {
	Device      string
	Steps       int
	First, Last float64
}

// Smoke trains a two-layer convolutional net for a few AdamW steps to denoise a fixed image
// on device: an end-to-end check of forward, backward, optimizer and device placement that
// needs no data. It fails when the loss does not fall.
func Smoke(device string, steps int, seed uint64, log io.Writer) (res SmokeResult, err error) {
	dev, err := torchx.ResolveDevice(device)
	if err != nil {
		return res, err
	}
	res = SmokeResult{Device: dev, Steps: steps}
	err = torchx.Try(func() {
		torchx.ManualSeed(seed)
		const n, c, hw = 2, 8, 48
		clean := make([]float32, n*hw*hw)
		for i := range clean {
			y, x := float64((i/hw)%hw), float64(i%hw)
			clean[i] = float32(math.Sin(x/5) * math.Cos(y/7))
		}
		target := torchx.To(torchx.FromFloat32(clean, n, 1, hw, hw), dev, -1)
		noisy := torchx.Add(target, torchx.MulScalar(torchx.Randn([]int64{n, 1, hw, hw}, torchx.Float32, dev), 0.3))
		param := func(shape []int64, fanIn int) torchx.Tensor {
			p := torchx.MulScalar(torchx.Randn(shape, torchx.Float32, dev), math.Sqrt(2/float64(fanIn)))
			torchx.SetRequiresGrad(p, true)
			return p
		}
		w1, b1 := param([]int64{c, 1, 3, 3}, 9), torchx.Zeros([]int64{c}, torchx.Float32, dev)
		w2, b2 := param([]int64{1, c, 3, 3}, 9*c), torchx.Zeros([]int64{1}, torchx.Float32, dev)
		torchx.SetRequiresGrad(b1, true)
		torchx.SetRequiresGrad(b2, true)
		opt := torchx.NewAdamW([]torchx.Tensor{w1, b1, w2, b2}, torchx.AdamWOpts{LR: 1e-2, WeightDecay: 0.005})
		defer opt.Close()
		same := torchx.ConvOpts{Padding: []int64{1}}
		var bar *progress.Reporter
		if log != nil {
			bar = progress.New(log, steps, "selftest", 2*time.Second)
			defer bar.Finish()
		}
		for step := 0; step < steps; step++ {
			opt.ZeroGrad()
			h := torchx.Relu(torchx.Conv2d(noisy, w1, b1, same))
			out := torchx.Add(noisy, torchx.Conv2d(h, w2, b2, same))
			loss := torchx.L1Loss(out, target, torchx.ReduceMean)
			torchx.Backward(loss)
			opt.Step()
			v := torchx.Item(loss)
			if step == 0 {
				res.First = v
			}
			res.Last = v
			if bar != nil {
				bar.Add(1, fmt.Sprintf("loss %.5f", v))
			}
			torchx.GC()
		}
	})
	if err != nil {
		return res, fmt.Errorf("smoke run on %s: %w", dev, err)
	}
	if !(res.Last < res.First) {
		return res, fmt.Errorf("smoke run on %s: loss did not fall (%.5f → %.5f)", dev, res.First, res.Last)
	}
	return res, nil
}

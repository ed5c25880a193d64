package train

import (
	"context"
	"fmt"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// Adapter is test-time adaptation (infer.adapt_steps): a copy of the trained network is
// fine-tuned on the volume being segmented with the training step itself — pairs of its own
// slices, the reconstruction loss — so it learns this scanner's and this patient's
// slice-to-slice correspondence without reading any label. It implements infer.Adapter; the
// inference commands give it to their jobs (infer cannot import train).
type Adapter struct{}

// Adapt returns a copy of t.Net fine-tuned for infer.adapt_steps steps on t.Volume (in mode
// sli2vol+ with its labels as the pseudo-labels, or without labels on the slice features
// alone); t.Net is not changed. The pairs are sampled as in training (data.pair_strides,
// resize range, crop, swaps), seeded by the config's seed, with train.optimizer at
// infer.adapt_lr (constant). With infer.adapt_mix w < 1 the copy is then moved back towards
// t.Net, each weight and statistic w·adapted + (1−w)·trained (WiSE-FT): measured, a fully
// adapted Sli2Vol+ lost 12 Dice points on one fold and gained 5 on another; at 0.3 none lost
// more than 0.1 (docs/results/adapt-mix.md).
func (Adapter) Adapt(ctx context.Context, t infer.AdaptTask) (infer.Network, error) {
	defer torchx.PinThread()()
	c := t.Cfg
	src, ok := t.Net.(*models.CFN)
	if !ok {
		return nil, fmt.Errorf("adapt: %T is not a trained correspondence-flow network", t.Net)
	}
	// Without pseudo-labels (Sli2Vol+ propagating with estimate none) the copy adapts its
	// slice features alone, the only ones that propagation reads.
	settings := c.PairSettings()
	settings.PL = settings.PL && t.Volume.HasPL
	sampler, err := data.NewPairSampler([]data.TrainVolume{t.Volume}, settings)
	if err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	model, opt, err := trainableCopy(c, t.Device, src)
	if err != nil {
		return nil, err
	}
	defer opt.Close()
	model.PL = src.PL && t.Volume.HasPL
	defer func() { model.PL = src.PL }()
	stepper := &Stepper{Cfg: c, Model: model, Opt: opt, Device: t.Device}
	t0, first, last := time.Now(), 0.0, 0.0
	mode := adaptNorm(c.Infer.AdaptNorm, src.PL, t.Volume.HasPL)
	if mode == configs.AdaptNormFrozen {
		// Normalise with the trained statistics: batch norm as at inference, weights trainable.
		models.SetBatchNormTraining(model, false)
	}
	steps, norm := c.Infer.AdaptSteps, 0
	if mode == configs.AdaptNormVolume {
		// About every slice once (a batch holds BatchSize pairs).
		norm = max(1, (t.Volume.Len+2*c.Train.BatchSize-1)/(2*c.Train.BatchSize))
	}
	for i, batch := range adaptBatches(sampler, c.Train.BatchSize, steps+norm) {
		if ctx != nil && ctx.Err() != nil {
			models.Free(model)
			return nil, ctx.Err()
		}
		if i >= steps {
			if i == steps { // a plain mean over these batches, the old statistics dropped
				models.SetCumulative(model, true)
			}
			// Statistics only: the network's forward pass, no gradient and no update.
			if err := stepper.Forward(batch); err != nil {
				models.Free(model)
				return nil, fmt.Errorf("adapt: batch-norm statistics: %w", err)
			}
			continue
		}
		loss, err := stepper.Step(batch)
		if err != nil {
			models.Free(model)
			return nil, fmt.Errorf("adapt: step %d: %w", i+1, err)
		}
		if i == 0 {
			first = loss
		}
		last = loss
		if t.Progress != nil {
			t.Progress(i+1, steps)
		}
	}
	models.SetCumulative(model, false)
	models.SetTraining(model, false)
	if mix := c.Infer.AdaptMix; mix < 1 {
		if err := models.Interpolate(model, src, mix); err != nil {
			models.Free(model)
			return nil, fmt.Errorf("adapt: %w", err)
		}
	}
	if t.Log != nil {
		fmt.Fprintf(t.Log, "adapted to %s: %d steps, loss %.4g → %.4g, batch norm %s, mix %g (%.1f s)\n",
			t.Volume.Source, steps, first, last, mode, c.Infer.AdaptMix, time.Since(t0).Seconds())
	}
	return model, nil
}

// adaptNorm resolves infer.adapt_norm auto: a network with a pseudo-label stream (Sli2Vol+)
// was trained on batch statistics of slices and pseudo-labels together; batches without
// pseudo-labels would normalise with the slices' alone, so its trained statistics stay
// (frozen). Batches like training's use their own (batch), as training did.
func adaptNorm(n configs.AdaptNorm, netPL, volumePL bool) configs.AdaptNorm {
	if n != configs.AdaptNormAuto {
		return n
	}
	if netPL && !volumePL {
		return configs.AdaptNormFrozen
	}
	return configs.AdaptNormBatch
}

// trainableCopy is a copy of src on device, seeded, in training mode, with its optimizer:
// training's setup (newCFNTraining) at infer.adapt_lr, constant, with src's weights.
func trainableCopy(c *configs.Config, device string, src *models.CFN) (*models.CFN, *torchx.Optimizer, error) {
	ac := *c
	ac.Train.LR, ac.Train.Schedule = c.Infer.AdaptLR, configs.ScheduleConstant
	model, opt, _, err := newCFNTraining(&ac, device, c.Infer.AdaptSteps)
	if err == nil {
		// In place: the optimizer holds these very parameters.
		err = models.LoadStateDict(model, models.StateDict(src))
	}
	if err != nil {
		if model != nil {
			models.Free(model)
		}
		opt.Close()
		return nil, nil, fmt.Errorf("adapt: copying the network: %w", err)
	}
	return model, opt, nil
}

// adaptBatches yields the first steps batches of the volume's epochs, epoch after epoch.
func adaptBatches(s *data.PairSampler, size, steps int) func(yield func(int, data.Batch) bool) {
	return func(yield func(int, data.Batch) bool) {
		i := 0
		for e := 0; i < steps; e++ {
			for _, b := range s.Batches(e, size, 0, data.Shard{}) {
				if i == steps || !yield(i, b) {
					return
				}
				i++
			}
		}
	}
}

package bench

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
	"github.com/sli2vol/sli2vol/train"
)

// The UNETR++ row: one training step of train.SegStepper (deep supervision, Dice + CE,
// gradient clipping, the configured optimizer) vs the repo's PyTorch UNETR++ reference with
// the same loss, on the same weights and patch batch. Dropout is off on both sides, so that
// their first losses can be compared.

// unetrSpec is what the PyTorch side needs: the network sizes (unetrpp_ref.py's names) and
// the optimizer.
type unetrSpec struct {
	Net       map[string]any `json:"net"`
	Optimizer string         `json:"optimizer"`
	LR        float64        `json:"lr"`
	Momentum  float64        `json:"momentum"`
	Nesterov  bool           `json:"nesterov"`
	WD        float64        `json:"weight_decay"`
	GradClip  float64        `json:"grad_clip"`
	Config    string         `json:"config"` // the sli2vol config the Go side reloads
}

// PrepareUNETR writes dir/unetr.json, dir/weights.pt (seeded initial weights) and
// dir/batch.pt (batch patches of a phantom with its 5 classes).
func PrepareUNETR(dir, configPath string, c *configs.Config, batch int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	u := c.UNETR
	p := u.PatchSize
	img, lab, g := data.Phantom([3]int{p[1] + p[1]/4, p[2] + p[2]/4, p[0] + p[0]/4}, c.Seed)
	s, err := data.NewSlicer(&g, -1)
	if err != nil {
		return err
	}
	n, _ := data.NewNormalizer(data.IntensityConfig{Mode: "ct", CTWindow: c.Data.CTWindow}, img)
	vol := &data.SegVolume{ID: "bench", Shape: data.SegShape(s), Image: data.SegImage(&data.Image{Geometry: g, Data: img}, s, n.Test()),
		Labels: data.ToSliceOrder(s, lab)}
	sampler, err := data.NewPatchSampler([]*data.SegVolume{vol}, p, u.ForegroundFraction, u.Mirror)
	if err != nil {
		return err
	}
	b, err := sampler.Sample(batch, rand.New(rand.NewSource(c.Seed+1)))
	if err != nil {
		return err
	}
	lbl := make([]int64, len(b.Labels))
	for i, v := range b.Labels {
		lbl[i] = int64(v)
	}
	sh := []int64{int64(batch), int64(p[0]), int64(p[1]), int64(p[2])}
	if err := torchx.SaveStateDict(filepath.Join(dir, "batch.pt"), map[string]torchx.Tensor{
		"image":  torchx.FromFloat32(b.Image, sh[0], 1, sh[1], sh[2], sh[3]),
		"labels": torchx.FromInt64(lbl, sh...),
		"known":  torchx.FromFloat32(b.Known, sh[0], 1, sh[1], sh[2], sh[3]),
	}); err != nil {
		return err
	}
	mc := runs.UNETRConfig(u, 1, len(data.PhantomStructures)+1)
	mc.Dropout = 0
	torchx.ManualSeed(uint64(c.Seed))
	m, err := models.NewUNETRPP(mc)
	if err != nil {
		return err
	}
	if err := torchx.SaveStateDict(filepath.Join(dir, "weights.pt"), models.StateDict(m)); err != nil {
		return err
	}
	abs, _ := filepath.Abs(configPath)
	sp := unetrSpec{Net: mc.ReferenceJSON(), Optimizer: string(u.Optimizer), LR: u.LR, Momentum: u.Momentum, Nesterov: u.Nesterov,
		WD: u.WeightDecay, GradClip: u.GradClip, Config: abs}
	js, _ := json.MarshalIndent(sp, "", "  ")
	return os.WriteFile(filepath.Join(dir, "unetr.json"), js, 0o644)
}

// LoadUNETRStep builds the trainer's UNETR++ step (dropout off) on the prepared weights and
// patch batch in dir; close releases its optimizer.
func LoadUNETRStep(dir, device string) (st *train.SegStepper, b *data.PatchBatch, close func(), err error) {
	js, err := os.ReadFile(filepath.Join(dir, "unetr.json"))
	if err != nil {
		return nil, nil, nil, err
	}
	var sp unetrSpec
	if err := json.Unmarshal(js, &sp); err != nil {
		return nil, nil, nil, err
	}
	c, err := configs.Load(sp.Config)
	if err != nil {
		return nil, nil, nil, err
	}
	c.UNETR.Dropout = 0
	bt, err := torchx.LoadStateDict(filepath.Join(dir, "batch.pt"))
	if err != nil {
		return nil, nil, nil, err
	}
	sh := bt["labels"].Shape()
	b = &data.PatchBatch{B: int(sh[0]), Patch: [3]int{int(sh[1]), int(sh[2]), int(sh[3])},
		Image: torchx.Float32s(bt["image"]), Known: torchx.Float32s(bt["known"])}
	for _, v := range torchx.Int64s(bt["labels"]) {
		b.Labels = append(b.Labels, int32(v))
	}
	m, err := models.NewUNETRPP(runs.UNETRConfig(c.UNETR, 1, len(data.PhantomStructures)+1))
	if err != nil {
		return nil, nil, nil, err
	}
	m.SetChannelDropout(0)
	sd, err := torchx.LoadStateDict(filepath.Join(dir, "weights.pt"))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := models.LoadStateDict(m, sd); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	models.To(m, device)
	models.SetTraining(m, true)
	opt := train.NewSegOptimizer(c.UNETR, models.Parameters(m))
	st = &train.SegStepper{Cfg: c, Model: m, Opt: opt, Device: device}
	return st, b, opt.Close, nil
}

// TrainUNETRSteps times steps UNETR++ training steps after one untimed step (FirstLoss).
func TrainUNETRSteps(dir, device string, steps int) (*Result, error) {
	st, b, closeOpt, err := LoadUNETRStep(dir, device)
	if err != nil {
		return nil, err
	}
	defer closeOpt()
	m := st.Model
	defer torchx.PinThread()()
	res := &Result{Steps: steps}
	if res.FirstLoss, err = st.Step(b); err != nil {
		return nil, err
	}
	sync := func() { torchx.Item(torchx.Sum(models.Parameters(m)[0], false)) } // waits for the device
	sync()
	stopProfile, err := startCPUProfile()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	for i := 0; i < steps; i++ {
		if _, err := st.Step(b); err != nil {
			return nil, err
		}
		torchx.GC()
	}
	sync()
	stopProfile()
	if steps > 0 {
		res.SamplesPerS = float64(steps*b.B) / time.Since(t0).Seconds()
	}
	res.PeakRSSMiB = rssMiB("VmHWM")
	return res, countStepOps(res, func() error { _, err := st.Step(b); return err })
}

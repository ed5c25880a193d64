package configs

import (
	"strings"
	"testing"
)

// Every closed choice decodes into its named type from YAML and rejects a value outside its
// set with a message that names the key and lists the allowed values.
func TestChoicesAreTyped(t *testing.T) {
	c, err := Load(write(t, "model: {mode: sli2vol}\ntrain: {optimizer: sgd, loss: l1, schedule: poly, amp: bf16}\n"+
		"infer: {object_estimate: propagated}\nunetr: {optimizer: adamw}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.Mode != ModeSli2Vol || c.Train.Optimizer != OptimizerSGD || c.Train.Loss != LossL1 ||
		c.Train.Schedule != SchedulePoly || c.Train.AMP != AMPBF16 || c.Infer.ObjectEstimate != EstimatePropagated ||
		c.UNETR.Optimizer != OptimizerAdamW {
		t.Fatalf("decoded %+v %+v %+v", c.Model, c.Train, c.Infer)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"model: {mode: sli2vol++}", `model.mode is "sli2vol++", want one of sli2vol, sli2vol+`},
		{"train: {optimizer: adam}", `train.optimizer is "adam", want one of adamw, sgd`},
		{"train: {loss: l2}", `train.loss is "l2", want one of l1, smooth_l1`},
		{"train: {schedule: cosine}", `train.schedule is "cosine", want one of constant, step, poly`},
		{"train: {amp: fp16}", `train.amp is "fp16", want one of none, bf16`},
		{"infer: {object_estimate: oracle}", `infer.object_estimate is "oracle", want one of none, propagated, model`},
		{"unetr: {optimizer: lbfgs}", `unetr.optimizer is "lbfgs", want one of adamw, sgd`},
	} {
		if _, err := Load(write(t, tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestModeUsesPL(t *testing.T) {
	if !ModeSli2VolPlus.UsesPL() || ModeSli2Vol.UsesPL() {
		t.Fatal("only Sli2Vol+ trains on pseudo-labels")
	}
}

// A run's config under a command's: device, threads and the encode batch always come from
// the command, the rest of the infer section only when the user set an inference flag;
// nothing else changes.
func TestForInference(t *testing.T) {
	run := Defaults()
	run.Device, run.Threads, run.Seed = "cpu", 1, 7
	run.Infer.MinArea, run.Infer.ObjectEstimate, run.Infer.EncodeBatch = 5, EstimatePropagated, 16
	run.Model.Radius = 3
	cmd := Defaults()
	cmd.Device, cmd.Threads, cmd.Seed = "cuda:1", 4, 9
	cmd.Infer.MinArea, cmd.Infer.ObjectEstimate, cmd.Infer.Resize, cmd.Infer.EncodeBatch = 1, EstimateModel, 256, 3
	runInfer := run.Infer
	runInfer.EncodeBatch = 3
	for _, tc := range []struct {
		inferSet bool
		want     Infer
	}{{false, runInfer}, {true, cmd.Infer}} {
		got := run.ForInference(cmd, tc.inferSet)
		if got.Device != "cuda:1" || got.Threads != 4 || got.Seed != 7 || got.Model.Radius != 3 || got.Infer != tc.want {
			t.Errorf("inferSet %v: device %s threads %d seed %d radius %d infer %+v", tc.inferSet, got.Device, got.Threads,
				got.Seed, got.Model.Radius, got.Infer)
		}
	}
	if run.Device != "cpu" || run.Infer.MinArea != 5 || run.Infer.EncodeBatch != 16 {
		t.Fatal("ForInference changed the run's own config")
	}
}

// The translations into the data package's settings carry every field.
func TestDataSettings(t *testing.T) {
	c := Defaults()
	c.Seed, c.Limits.MaxVoxels = 11, 1234
	c.Data.Intensity, c.Data.CTWindow, c.Data.MRIPercentiles = "ct", [2]float64{-100, 200}, [2]float64{1, 99}
	c.Data.PairStrides, c.Data.SwapProb, c.Data.ResizeRange, c.Data.Crop = []int{1, 2}, 0.25, [2]int{40, 50}, 32
	ic := c.Data.IntensitySettings()
	if ic.Mode != "ct" || ic.CTWindow != [2]float64{-100, 200} || ic.MRIPercentiles != [2]float64{1, 99} ||
		ic.JitterLow != c.Data.CTWindowJitterLow || ic.JitterUp != c.Data.CTWindowJitterUp {
		t.Errorf("intensity %+v", ic)
	}
	pc := c.PairSettings()
	if len(pc.Strides) != 2 || pc.SwapProb != 0.25 || pc.ResizeRange != [2]int{40, 50} || pc.Crop != 32 || pc.Seed != 11 {
		t.Errorf("pairs %+v", pc)
	}
	if c.VolumeLimits().MaxVoxels != 1234 {
		t.Errorf("limits %+v", c.VolumeLimits())
	}
	for axis, want := range map[string]int{"auto": -1, "0": 0, "2": 2} {
		c.Data.SliceAxis = axis
		if got := c.Data.Axis(); got != want {
			t.Errorf("slice_axis %s: %d, want %d", axis, got, want)
		}
	}
}

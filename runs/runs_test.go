package runs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

func TestProgressNext(t *testing.T) {
	for _, tc := range []struct{ from, want Progress }{
		{Progress{Epoch: 0, Batch: 0, Step: 0}, Progress{Epoch: 0, Batch: 1, Step: 1}},
		{Progress{Epoch: 0, Batch: 2, Step: 2}, Progress{Epoch: 1, Batch: 0, Step: 3}}, // the last batch of an epoch of 3
		{Progress{Epoch: 4, Batch: 1, Step: 13, World: 2}, Progress{Epoch: 4, Batch: 2, Step: 14, World: 2}},
	} {
		if got := tc.from.Next(3); got != tc.want {
			t.Errorf("%+v.Next(3) = %+v, want %+v", tc.from, got, tc.want)
		}
	}
}

// The config's model section reaches every field of the network's config: the defaults are
// configs/defaults.yaml's values (the paper's network).
func TestCFNConfigFromDefaults(t *testing.T) {
	m := configs.Defaults().Model
	want := models.CFNConfig{PL: true, Width: 16, Stages: 4, BlocksPerStage: 2, FeatureDim: 64, Radius: 6, EdgeRadius: 3,
		GEIGDirections: 4, GEIGScales: []int{1, 2, 3}}
	if got := CFNConfig(m); !reflect.DeepEqual(got, want) {
		t.Fatalf("CFNConfig(defaults) = %+v, want %+v", got, want)
	}
	m.Mode, m.SeparatePLEncoder = configs.ModeSli2Vol, true
	if got := CFNConfig(m); got.PL || !got.SeparatePLEncoder {
		t.Fatalf("sli2vol: %+v", got)
	}
	u := configs.Defaults().UNETR
	uc := UNETRConfig(u, 1, 3)
	if uc.Classes != 3 || uc.InChannels != 1 || uc.PatchSize != u.PatchSize || uc.Dims != u.Dims || uc.Depths != u.Depths ||
		uc.ProjSize != u.ProjSize || uc.DecoderDepth != u.DecoderDepth || uc.Dropout != u.Dropout || !uc.DeepSupervision {
		t.Fatalf("UNETRConfig %+v from %+v", uc, u)
	}
}

func smallConfig() *configs.Config {
	c := configs.Defaults()
	c.Model.Width, c.Model.Stages, c.Model.BlocksPerStage, c.Model.FeatureDim, c.Model.Radius = 4, 1, 1, 8, 2
	return c
}

func weights(m models.Module) map[string][]float32 {
	out := map[string][]float32{}
	for k, v := range models.StateDict(m) {
		out[k] = torchx.Float32s(torchx.To(v, "cpu", torchx.Float32))
	}
	return out
}

// A checkpoint restores weights, optimizer state and progress exactly; a run folder with
// only a checkpoint loads for inference from it; a damaged model.pt is an error, not a
// reason to fall back on the checkpoint.
func TestCheckpointAndLoad(t *testing.T) {
	c := smallConfig()
	dir := t.TempDir()
	torchx.ManualSeed(1)
	m, _ := NewCFN(c.Model)
	opt := torchx.NewAdamW(models.Parameters(m), torchx.AdamWOpts{LR: 1e-2})
	defer opt.Close()
	// One step, so that the optimizer has moments to save.
	x := torchx.Rand([]int64{2, 1, 24, 24}, torchx.Float32, "cpu")
	torchx.Backward(torchx.L1Loss(m.Reconstruct(x, x, x, x), x, torchx.ReduceMean))
	opt.Step()
	p := Progress{Epoch: 2, Batch: 1, Step: 9}
	if err := WriteConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	if err := SaveCheckpoint(Path(dir, CheckpointFile), m, opt, p); err != nil {
		t.Fatal(err)
	}
	saved := weights(m)
	torchx.ManualSeed(2)
	m2, _ := NewCFN(c.Model)
	opt2 := torchx.NewAdamW(models.Parameters(m2), torchx.AdamWOpts{LR: 1e-2})
	defer opt2.Close()
	got, err := LoadCheckpoint(Path(dir, CheckpointFile), m2, opt2)
	if err != nil || got != p {
		t.Fatalf("progress %+v, %v; want %+v", got, err, p)
	}
	if !reflect.DeepEqual(weights(m), weights(m2)) {
		t.Fatal("restored weights differ")
	}
	// The optimizer state came back too: one more step on the same gradient moves both
	// models alike (AdamW's moments and step count decide the update).
	for _, mo := range []struct {
		m   models.Module
		opt *torchx.Optimizer
	}{{m, opt}, {m2, opt2}} {
		mo.opt.ZeroGrad()
		cm := mo.m.(*models.CFN)
		torchx.Backward(torchx.L1Loss(cm.Reconstruct(x, x, x, x), x, torchx.ReduceMean))
		mo.opt.Step()
	}
	if !reflect.DeepEqual(weights(m), weights(m2)) {
		t.Fatal("a step after restoring the optimizer moves the weights differently")
	}
	// Only a checkpoint: inference loads its weights.
	r, err := LoadCFN(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(weights(r.Model), saved) || r.Config.Model.Width != 4 {
		t.Fatal("LoadCFN from the checkpoint: other weights or config")
	}
	// A damaged model.pt is reported, naming it.
	os.WriteFile(Path(dir, ModelFile), []byte("not a state dict"), 0o644)
	if _, err := LoadCFN(dir, ""); err == nil || !strings.Contains(err.Error(), ModelFile) {
		t.Fatalf("damaged model.pt: %v", err)
	}
	if err := CheckFresh(dir, false, "train"); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("CheckFresh on a run folder: %v", err)
	}
	if err := CheckFresh(dir, true, "train"); err != nil {
		t.Fatalf("CheckFresh resuming: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	if _, err := LoadCFN(missing, ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing folder: %v", err)
	}
	if _, err := LoadCFN(dir, ""); err == nil || !strings.Contains(err.Error(), "not a sli2vol run folder") {
		t.Errorf("empty folder: %v", err)
	}
	WriteConfig(dir, smallConfig())
	if _, err := LoadCFN(dir, ""); err == nil || !strings.Contains(err.Error(), "has training finished?") {
		t.Errorf("no weights: %v", err)
	}
	if _, err := LoadUNETR(dir, ""); err == nil || !strings.Contains(err.Error(), "not a UNETR++ run") {
		t.Errorf("CFN folder as UNETR++: %v", err)
	}
	for body, want := range map[string]string{`{"ids": [0]}`: "at least one class", `{"ids": `: "not a class list"} {
		os.WriteFile(Path(dir, ClassesFile), []byte(body), 0o644)
		if _, err := ReadClasses(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("classes %s: %v, want %q", body, err, want)
		}
	}
	if err := WriteClasses(Path(dir, ClassesFile), data.ClassMap{IDs: []int32{0, 5, 12}}); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadClasses(dir); err != nil || !reflect.DeepEqual(m.IDs, []int32{0, 5, 12}) || !IsUNETR(dir) {
		t.Errorf("classes round trip: %v %v", m.IDs, err)
	}
}

package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c := Defaults()
	if c.Model.Radius != 6 || c.Model.Width != 16 || c.Model.FeatureDim != 64 || c.Model.GEIG.Directions != 4 ||
		len(c.Model.GEIG.Scales) != 3 || c.Data.CTWindow != [2]float64{-300, 400} || c.Train.LR != 1e-4 ||
		c.Device != "auto" || c.Data.PairStrides[0] != 1 {
		t.Fatalf("defaults %+v", c)
	}
}

// paper.yaml carries §4.2's hyper-parameters.
func TestPaperPreset(t *testing.T) {
	c, err := Load("paper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.Optimizer != "adamw" || c.Train.LR != 1e-4 || c.Train.WeightDecay != 0.005 || c.Train.Epochs != 4 {
		t.Errorf("CFN training %+v", c.Train)
	}
	u := c.UNETR
	if u.Optimizer != "sgd" || u.LR != 0.01 || u.Momentum != 0.99 || u.WeightDecay != 3e-5 || u.Epochs != 1000 {
		t.Errorf("UNETR++ training %+v", u)
	}
	if c.Model.Mode != "sli2vol+" || c.Model.SeparatePLEncoder || c.Infer.ObjectEstimate != "none" {
		t.Errorf("model %+v infer %+v", c.Model, c.Infer)
	}
}

func TestEveryPresetLoads(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) < 3 {
		t.Fatalf("presets %v", files)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	p := write(t, "train:\n  lr: 3.0e-4\n  epochs: 7\nseed: 5\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != 3e-4 || c.Train.Epochs != 7 || c.Seed != 5 || c.Train.WeightDecay != 0.005 {
		t.Fatalf("file layer: %+v", c.Train)
	}
	t.Setenv("SLI2VOL_TRAIN_LR", "5e-4")
	t.Setenv("SLI2VOL_DEVICE", "cpu")
	t.Setenv("SLI2VOL_DATA_RESIZE_RANGE", "260,270")
	t.Setenv("SLI2VOL_DATA_PAIR_STRIDES", "2,3,4")
	c, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != 5e-4 || c.Device != "cpu" || c.Train.Epochs != 7 || c.Data.ResizeRange != [2]int{260, 270} ||
		len(c.Data.PairStrides) != 3 || c.Data.PairStrides[2] != 4 {
		t.Fatalf("env layer: lr %g device %s resize %v strides %v", c.Train.LR, c.Device, c.Data.ResizeRange, c.Data.PairStrides)
	}
	if d := Defaults(); d.Train.LR != 1e-4 {
		t.Fatalf("Defaults() read the environment: lr %g", d.Train.LR)
	}
	t.Setenv("SLI2VOL_DATA_CROP", "big")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "data.crop") {
		t.Fatalf("bad env value: %v", err)
	}
	t.Setenv("SLI2VOL_DATA_CROP", "")
	os.Unsetenv("SLI2VOL_DATA_CROP")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Float64("lr", 0, "")
	fs.Int64("seed", 0, "")
	l := NewLoader()
	if err := l.BindFlag("train.lr", fs.Lookup("lr")); err != nil {
		t.Fatal(err)
	}
	if err := l.BindFlag("seed", fs.Lookup("seed")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--lr", "0.002"}); err != nil {
		t.Fatal(err)
	}
	c, err = l.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != 0.002 {
		t.Fatalf("flag layer: lr %g", c.Train.LR)
	}
	if c.Seed != 5 {
		t.Fatalf("an unset flag overrode the file: seed %d", c.Seed)
	}
	if err := l.BindFlag("train.nope", fs.Lookup("lr")); err == nil {
		t.Fatal("binding to an unknown key accepted")
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown top key", "sed: 1\n", "unknown key sed"},
		{"unknown nested key", "train:\n  lrr: 1\n", "unknown key train.lrr"},
		{"wrong type string", "train:\n  lr: fast\n", "train.lr"},
		{"fractional int", "train:\n  epochs: 2.5\n", "epochs"},
		{"list for scalar", "model:\n  radius: [1, 2]\n", "radius"},
		{"bad enum", "model:\n  mode: sli3vol\n", `model.mode is "sli3vol"`},
		{"bad device", "device: gpu\n", `device is "gpu"`},
		{"negative", "model:\n  radius: -1\n", "model.radius is -1"},
		{"adapt mix zero", "infer:\n  adapt_mix: 0\n", "infer.adapt_mix is 0"},
		{"adapt mix above one", "infer:\n  adapt_mix: 1.5\n", "infer.adapt_mix is 1.5"},
		{"not yaml", "train: [\n", "not valid YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.body)
			_, err := Load(p)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, p) || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s and %q", msg, p, c.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c := Defaults()
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	p := write(t, string(b))
	c2, err := Load(p)
	if err != nil {
		t.Fatalf("shown config does not load back: %v\n%s", err, b)
	}
	b2, _ := c2.YAML()
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the config:\n%s\n---\n%s", b, b2)
	}
}

package train

import (
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/data/tensors"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/internal/filehash"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// adaptConfig is a Sli2Vol network small enough to train and adapt in seconds, but wide
// enough to learn a correspondence that an intensity inversion breaks.
func adaptConfig(t *testing.T) *configs.Config {
	c := configs.Defaults()
	c.Device = "cpu"
	c.Seed = 1
	c.Model.Mode = configs.ModeSli2Vol
	c.Model.Width, c.Model.Stages, c.Model.BlocksPerStage, c.Model.FeatureDim, c.Model.Radius = 8, 1, 1, 16, 3
	c.Data.ResizeRange, c.Data.Crop = [2]int{48, 52}, 48
	c.Train.BatchSize, c.Train.Epochs, c.Train.LR = 4, 6, 1e-3
	c.Train.CheckpointEvery = 1000
	c.Infer.AdaptLR = 1e-3
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// trainedRun trains adaptConfig on four phantoms and returns its run folder.
func trainedRun(t *testing.T, c *configs.Config) string {
	dir := t.TempDir()
	if err := data.WritePhantomDataset(dir, 4, 1, [3]int{48, 48, 12}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ds, err := data.OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if _, err := TrainCFN(c, Options{Data: ds, RunOptions: RunOptions{Dir: run, Device: "cpu", Log: io.Discard}}); err != nil {
		t.Fatal(err)
	}
	// Training records its scale: 48-px slices of 1.5 mm resized to about 50 px.
	if sc, err := runs.ReadScale(run); err != nil || math.Abs(sc.MMPerPx-1.5*48/50) > 1e-9 || sc.Volumes != 4 {
		t.Fatalf("scale.json: %+v (%v), want %g mm/px over 4 volumes", sc, err, 1.5*48/50)
	}
	return run
}

// testPhantoms writes held-out phantoms (seed 2); inverted, with every intensity negated: the
// same anatomy under a contrast the network never saw.
func testPhantoms(t *testing.T, cases int, inverted bool) *data.Dataset {
	dir := t.TempDir()
	if err := data.WritePhantomDataset(dir, cases, 2, [3]int{48, 48, 12}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ds, err := data.OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	if inverted {
		cs, err := infer.EvalCases(ds)
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range cs {
			img, err := data.LoadImage(cs.Image, data.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range img.Data {
				img.Data[i] = -v
			}
			tmp := filepath.Join(t.TempDir(), "inverted.nii.gz")
			if err := data.WriteImageInt16(tmp, img.Data, &img.Geometry, data.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, cs.Image); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ds
}

func weights(m models.Module) map[string][]float32 {
	out := map[string][]float32{}
	for k, v := range models.StateDict(m) {
		out[k] = torchx.Float32s(v)
	}
	return out
}

func sameWeights(a, b map[string][]float32) bool {
	return maps.EqualFunc(a, b, func(x, y []float32) bool { return slices.Equal(x, y) })
}

// The adaptation tests share one trained network (training is the slow part).
func TestAdaptation(t *testing.T) {
	c := adaptConfig(t)
	run := trainedRun(t, c)
	r, err := runs.LoadCFN(run, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	before, files := weights(r.Model), folderDigest(t, run)
	t.Run("CopyIsSeeded", func(t *testing.T) { adaptCopies(t, c, r.Model) })
	t.Run("RecoversInvertedContrast", func(t *testing.T) { adaptRecovers(t, c, r.Model) })
	t.Run("NormStatistics", func(t *testing.T) { adaptVolumeStatistics(t, c, r.Model) })
	t.Run("FrozenStatistics", func(t *testing.T) { adaptFrozen(t, c, r.Model) })
	// Neither the adaptations nor the adapted evaluation changed the run's network or folder.
	if !sameWeights(weights(r.Model), before) {
		t.Fatal("adaptation changed the run's network")
	}
	if folderDigest(t, run) != files {
		t.Fatal("adaptation changed the run folder")
	}
}

// Adaptation fine-tunes a copy: it differs from the network, and two adaptations with one
// seed give the same weights.
func adaptCopies(t *testing.T, c *configs.Config, net *models.CFN) {
	before := weights(net)
	ac := *c
	ac.Infer.AdaptSteps = 3
	ds := testPhantoms(t, 1, true)
	cs, _ := infer.EvalCases(ds)
	img, _, err := data.LoadCase(cs[0], ac.VolumeLimits())
	if err != nil {
		t.Fatal(err)
	}
	vol := adaptVolume(t, &ac, img)
	var copies [2]map[string][]float32
	for i := range copies {
		out, err := Adapter{}.Adapt(nil, infer.AdaptTask{Cfg: &ac, Device: "cpu", Net: net, Volume: vol})
		if err != nil {
			t.Fatal(err)
		}
		copies[i] = weights(out.(*models.CFN))
		models.Free(out.(*models.CFN))
	}
	if !sameWeights(copies[0], copies[1]) {
		t.Fatal("two adaptations with one seed gave different weights")
	}
	if sameWeights(copies[0], before) {
		t.Fatal("3 adaptation steps left the weights as they were")
	}
	adaptMixes(t, &ac, net, vol, before)
}

// With adapt_mix w, every weight and running statistic of the copy is w·(the copy adapt_mix 1
// gives) + (1−w)·(the trained one), and the batch counter is the adapted copy's.
func adaptMixes(t *testing.T, c *configs.Config, net *models.CFN, vol data.TrainVolume, trained map[string][]float32) {
	adapt := func(mix float64) map[string][]float32 {
		mc := *c
		mc.Infer.AdaptMix = mix
		out, err := Adapter{}.Adapt(nil, infer.AdaptTask{Cfg: &mc, Device: "cpu", Net: net, Volume: vol})
		if err != nil {
			t.Fatal(err)
		}
		defer models.Free(out.(*models.CFN))
		return weights(out.(*models.CFN))
	}
	adapted, mixed := adapt(1), adapt(0.3)
	for n, got := range mixed {
		for i, g := range got {
			want := 0.3*float64(adapted[n][i]) + 0.7*float64(trained[n][i])
			if strings.HasSuffix(n, "num_batches_tracked") {
				want = float64(adapted[n][i])
			}
			if math.Abs(float64(g)-want) > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("adapt_mix 0.3: %s[%d] = %g, want %g", n, i, g, want)
			}
		}
	}
}

// adaptVolume is img as adaptation reads it (no pseudo-labels).
func adaptVolume(t *testing.T, c *configs.Config, img *data.Image) data.TrainVolume {
	p, err := (&infer.Job{Cfg: c, Device: "cpu"}).Prepare(img)
	if err != nil {
		t.Fatal(err)
	}
	norm, err := data.NewNormalizer(c.Data.IntensitySettings(), img.Data)
	if err != nil {
		t.Fatal(err)
	}
	return data.MemoryVolume("adapt", img, nil, p.Slicer, norm)
}

// With adapt_norm volume and no steps, the copy keeps every weight, and its first batch norm's
// running mean and variance become the plain means, over the statistics batches (about every
// slice once: ⌈slices / 2·batch⌉ batches of the seeded pairs), of each batch's channel mean
// and unbiased variance at that layer's input — recomputed here from the same batches through
// the network's own input filter and first convolution.
func adaptVolumeStatistics(t *testing.T, c *configs.Config, net *models.CFN) {
	ac := *c
	// AdaBN proper: the re-estimated statistics replace the trained ones (no mixing back).
	ac.Infer.AdaptSteps, ac.Infer.AdaptNorm, ac.Infer.AdaptMix = 0, configs.AdaptNormVolume, 1
	cs, _ := infer.EvalCases(testPhantoms(t, 1, false))
	img, _, err := data.LoadCase(cs[0], ac.VolumeLimits())
	if err != nil {
		t.Fatal(err)
	}
	vol := adaptVolume(t, &ac, img)
	out, err := Adapter{}.Adapt(nil, infer.AdaptTask{Cfg: &ac, Device: "cpu", Net: net, Volume: vol})
	if err != nil {
		t.Fatal(err)
	}
	adapted := out.(*models.CFN)
	defer models.Free(adapted)
	before, after := models.Parameters(net), models.Parameters(adapted)
	for i := range before {
		if !slices.Equal(torchx.Float32s(before[i]), torchx.Float32s(after[i])) {
			t.Fatalf("parameter %d changed without adaptation steps", i)
		}
	}

	sampler, err := data.NewPairSampler([]data.TrainVolume{vol}, ac.PairSettings())
	if err != nil {
		t.Fatal(err)
	}
	bs := ac.Train.BatchSize
	n := (vol.Len + 2*bs - 1) / (2 * bs)
	channels := int(net.Encoder.BN1.RunningMean.Shape()[0])
	mean, variance := make([]float64, channels), make([]float64, channels)
	torchx.NoGrad(func() {
		for _, b := range adaptBatches(sampler, bs, n) {
			p := tensors.FromBatch(b, "cpu")
			x := torchx.MulScalar(torchx.Cat([]torchx.Tensor{p.A, p.B}, 0), ac.Data.IntensityScale)
			h := net.Encoder.Conv1.Forward(net.Input.Forward(x))
			shape, v := h.Shape(), torchx.Float32s(h)
			plane := int(shape[2] * shape[3])
			for ch := 0; ch < channels; ch++ {
				var xs []float64
				for s := 0; s < int(shape[0]); s++ {
					for _, x := range v[(s*channels+ch)*plane : (s*channels+ch+1)*plane] {
						xs = append(xs, float64(x))
					}
				}
				m, ss := 0.0, 0.0
				for _, x := range xs {
					m += x
				}
				m /= float64(len(xs))
				for _, x := range xs {
					ss += (x - m) * (x - m)
				}
				mean[ch] += m / float64(n)
				variance[ch] += ss / float64(len(xs)-1) / float64(n)
			}
		}
	})
	gotMean, gotVar := torchx.Float32s(adapted.Encoder.BN1.RunningMean), torchx.Float32s(adapted.Encoder.BN1.RunningVar)
	oldMean := torchx.Float32s(net.Encoder.BN1.RunningMean)
	moved := false
	for ch := range channels {
		if math.Abs(float64(gotMean[ch])-mean[ch]) > 1e-4*(1+math.Abs(mean[ch])) || math.Abs(float64(gotVar[ch])-variance[ch]) > 1e-4*variance[ch] {
			t.Fatalf("bn1 channel %d: running mean/var %g/%g, want %g/%g", ch, gotMean[ch], gotVar[ch], mean[ch], variance[ch])
		}
		moved = moved || math.Abs(float64(oldMean[ch])-mean[ch]) > 1e-3
	}
	if !moved {
		t.Fatal("the test volume's statistics equal the trained ones: the check cannot tell")
	}
}

// With adapt_norm frozen the steps change the weights but leave every batch-norm buffer
// (running statistics, batch count) as trained; with batch they move the statistics.
func adaptFrozen(t *testing.T, c *configs.Config, net *models.CFN) {
	cs, _ := infer.EvalCases(testPhantoms(t, 1, false))
	img, _, err := data.LoadCase(cs[0], c.VolumeLimits())
	if err != nil {
		t.Fatal(err)
	}
	buffers := func(m models.Module) [][]float32 {
		var out [][]float32
		for _, b := range models.Buffers(m) {
			out = append(out, torchx.Float32s(torchx.To(b, "", torchx.Float32)))
		}
		return out
	}
	trained := buffers(net)
	for _, norm := range []configs.AdaptNorm{configs.AdaptNormFrozen, configs.AdaptNormBatch} {
		ac := *c
		ac.Infer.AdaptSteps, ac.Infer.AdaptNorm = 3, norm
		out, err := Adapter{}.Adapt(nil, infer.AdaptTask{Cfg: &ac, Device: "cpu", Net: net, Volume: adaptVolume(t, &ac, img)})
		if err != nil {
			t.Fatal(err)
		}
		adapted := out.(*models.CFN)
		same := slices.EqualFunc(buffers(adapted), trained, func(a, b []float32) bool { return slices.Equal(a, b) })
		unchanged := sameWeights(weights(adapted), weights(net))
		models.Free(adapted)
		if unchanged {
			t.Fatalf("adapt_norm %s: 3 steps left the weights as they were", norm)
		}
		if same != (norm == configs.AdaptNormFrozen) {
			t.Fatalf("adapt_norm %s: batch-norm buffers unchanged %v, want %v", norm, same, norm == configs.AdaptNormFrozen)
		}
	}
}

// On phantoms whose contrast is inverted, propagation with the trained network loses much of
// its accuracy; adapting it to each test volume (no label read) wins ≥ 5 mean Dice points back.
func adaptRecovers(t *testing.T, c *configs.Config, net *models.CFN) {
	ds := testPhantoms(t, 2, true)
	plain := &infer.Job{Cfg: c, Net: net, Device: "cpu"}
	ac := *c
	ac.Infer.AdaptSteps = 30
	adapted := &infer.Job{Cfg: &ac, Net: net, Device: "cpu", Adapter: Adapter{}}
	ev, err := infer.Evaluate(ds, plain, []infer.Method{{Name: "plain", Job: plain}, {Name: "adapted", Job: adapted}}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, a := ev.MeanDice("plain"), ev.MeanDice("adapted")
	t.Logf("inverted contrast: mean Dice %.1f without adaptation, %.1f adapted", 100*p, 100*a)
	if a < p+0.05 {
		t.Fatalf("adapted mean Dice %.3f, not 0.05 above %.3f without adaptation", a, p)
	}
}

// Sli2Vol+ adapts its pseudo-label stream too: with the propagated estimate, two rounds of
// (propagate, adapt on that) run through the real training step on a phantom, and the
// adapted copies leave the network as it was.
func TestAdaptSli2VolPlusRounds(t *testing.T) {
	c := tinyConfig(t, configs.ModeSli2VolPlus)
	c.Infer.ObjectEstimate = configs.EstimatePropagated
	c.Infer.AdaptSteps, c.Infer.AdaptRounds, c.Infer.AdaptLR = 2, 2, 1e-3
	torchx.ManualSeed(1)
	net, err := runs.NewCFN(c.Model)
	if err != nil {
		t.Fatal(err)
	}
	models.SetTraining(net, false)
	before := weights(net)
	ds := phantoms(t, 1)
	cs, _ := infer.EvalCases(ds)
	img, lab, err := data.LoadCase(cs[0], c.VolumeLimits())
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	j := &infer.Job{Cfg: c, Net: net, Device: "cpu", Adapter: Adapter{}, Log: &log}
	p, err := j.Prepare(img)
	if err != nil {
		t.Fatal(err)
	}
	mid := p.Slicer.Len() / 2
	mask := data.Slice(p.Slicer, lab.Data, mid)
	res, err := j.Segment(p, &data.Annotation{Slice: mid, Mask: mask, IDs: data.IDsIn(mask)})
	if err != nil {
		t.Fatal(err)
	}
	if got := data.Slice(p.Slicer, res.Labels, mid); !slices.Equal(got, mask) {
		t.Fatal("the annotated slice is not the annotation")
	}
	if n := strings.Count(log.String(), "adapted to"); n != 2 {
		t.Fatalf("%d adaptations logged, want 2 rounds:\n%s", n, log.String())
	}
	if !sameWeights(weights(net), before) {
		t.Fatal("adaptation changed the network")
	}
	// With estimate none propagation reads the slice features alone, and so does the one
	// adaptation; the copy's PL input is back on for what follows.
	log.Reset()
	c.Infer.ObjectEstimate = configs.EstimateNone
	if _, err := j.Segment(p, &data.Annotation{Slice: mid, Mask: mask, IDs: data.IDsIn(mask)}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "adapted to"); n != 1 || !net.UsesPL() {
		t.Fatalf("estimate none: %d adaptations logged, want 1:\n%s", n, log.String())
	}
}

// folderDigest is the digest of dir's files (names and contents), computed afresh.
func folderDigest(t *testing.T, dir string) filehash.Digest {
	d, err := new(filehash.Cache).Sum(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// infer.adapt_norm auto freezes the statistics of a Sli2Vol+ network adapting without
// pseudo-labels alone; explicit settings stand.
func TestAdaptNormAuto(t *testing.T) {
	for _, tc := range []struct {
		n            configs.AdaptNorm
		netPL, volPL bool
		want         configs.AdaptNorm
	}{
		{configs.AdaptNormAuto, true, false, configs.AdaptNormFrozen},
		{configs.AdaptNormAuto, true, true, configs.AdaptNormBatch},
		{configs.AdaptNormAuto, false, false, configs.AdaptNormBatch},
		{configs.AdaptNormBatch, true, false, configs.AdaptNormBatch},
		{configs.AdaptNormFrozen, false, false, configs.AdaptNormFrozen},
		{configs.AdaptNormVolume, true, false, configs.AdaptNormVolume},
	} {
		if got := adaptNorm(tc.n, tc.netPL, tc.volPL); got != tc.want {
			t.Errorf("adaptNorm(%s, network PL %v, volume PL %v) = %s, want %s", tc.n, tc.netPL, tc.volPL, got, tc.want)
		}
	}
}

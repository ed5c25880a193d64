package train

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/internal/tensortest"
	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// The DDP workers of these tests are this test binary, started by torchrun with
// SLI2VOL_DDP_WORKER naming the folder of their inputs.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SLI2VOL_DDP_WORKER"); dir != "" {
		if err := ddpWorker(dir); err != nil {
			fmt.Fprintf(os.Stderr, "rank %s: %v\n", os.Getenv("RANK"), err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	ddpSteps = 5
	ddpBatch = 2
	ddpCrop  = 32
)

// Data-parallel training is PyTorch's: the repo's PyTorch reference in
// DistributedDataParallel and sli2vol's trainer step with dist.DDP, both launched by torchrun
// as two processes on Gloo from the same weights with the same per-rank batches, end 5 AdamW
// steps with every parameter and batch-norm buffer equal (1e-5) on every rank.
func TestDDPMatchesPyTorch(t *testing.T) {
	py := testpy.Find(t, "torch")
	if !dist.Available(dist.Gloo) {
		t.Skip("this libtorch build has no Gloo process group")
	}
	dir := t.TempDir()
	writeDDPInputs(t, dir)
	_, file, _, _ := runtime.Caller(0)
	ref := filepath.Join(filepath.Dir(file), "..", "bench", "pytorch", "ddp_ref.py")
	// Debian's torch 1.13 under Python 3.11 needs --redirects/--tee given explicitly (its
	// launcher fails to parse their default).
	// The default (static) rendezvous, as the README shows it: torchrun's agent serves the
	// TCPStore on the master port and the ranks join it.
	torchrun := []string{"-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", freePort(t),
		"--redirects", "1", "--tee", "1"}
	goRun := exec.Command(py, append(torchrun, "--no_python", os.Args[0], "-test.run=^$")...)
	goRun.Env = append(os.Environ(), "SLI2VOL_DDP_WORKER="+dir)
	if out, err := goRun.CombinedOutput(); err != nil {
		t.Fatalf("torchrun of the Go workers: %v\n%s", err, out)
	}
	torchrun[5] = freePort(t)
	if out, err := exec.Command(py, append(torchrun, ref, dir)...).CombinedOutput(); err != nil {
		t.Fatalf("torchrun of PyTorch DDP: %v\n%s", err, out)
	}
	// Rank r against PyTorch's rank r: parameters agree on every rank, but each rank's
	// batch-norm statistics end with its own last batch (DDP broadcasts rank 0's before each
	// forward pass, not after the last). Tolerance 1e-5, relative for values above 1 (the
	// running variances here reach ~400).
	init := tensortest.ReadState(t, filepath.Join(dir, "weights.pt"))
	moved := 0.0
	buffer := map[string]bool{} // parameters (false) are compared across ranks too
	mustCFN(t).Visit("", &models.Visitor{Tensor: func(name string, _ *torchx.Tensor, isBuffer bool) { buffer[name] = isBuffer }})
	var py0 map[string][]float64
	for rank := 0; rank < 2; rank++ {
		want := tensortest.ReadState(t, filepath.Join(dir, fmt.Sprintf("py_rank%d.pt", rank)))
		got := tensortest.ReadState(t, filepath.Join(dir, fmt.Sprintf("go_rank%d.pt", rank)))
		if rank == 0 {
			py0 = want
		}
		if len(got) != len(want) {
			t.Fatalf("rank %d: Go has %d tensors, PyTorch %d", rank, len(got), len(want))
		}
		for name, w := range want {
			for i := range w {
				if d := math.Abs(got[name][i] - w[i]); d > 1e-5*math.Max(1, math.Abs(w[i])) || math.IsNaN(d) {
					t.Fatalf("rank %d: %s[%d] Go %g, PyTorch %g", rank, name, i, got[name][i], w[i])
				}
				if !buffer[name] && w[i] != py0[name][i] {
					t.Fatalf("parameter %s[%d] differs between PyTorch's ranks", name, i)
				}
				moved = math.Max(moved, math.Abs(w[i]-init[name][i]))
			}
		}
	}
	if moved < 1e-4 {
		t.Fatalf("the weights moved by at most %g in %d steps: nothing was compared", moved, ddpSteps)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func mustCFN(t *testing.T) *models.CFN {
	m, err := runs.NewCFN(tinyConfigOf(configs.ModeSli2VolPlus).Model)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// writeDDPInputs writes the spec, initial weights and per-rank batches both sides train on.
func writeDDPInputs(t *testing.T, dir string) {
	c := tinyConfigOf(configs.ModeSli2VolPlus)
	torchx.ManualSeed(11)
	m, err := runs.NewCFN(c.Model)
	if err != nil {
		t.Fatal(err)
	}
	if err := torchx.SaveStateDict(filepath.Join(dir, "weights.pt"), models.StateDict(m)); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(5))
	batches := map[string]torchx.Tensor{}
	n := ddpBatch * ddpCrop * ddpCrop
	for rank := 0; rank < 2; rank++ {
		for s := 0; s < ddpSteps; s++ {
			for _, k := range []string{"a", "b", "pla", "plb"} {
				v := make([]float32, n)
				for i := range v {
					if k[0] == 'p' {
						v[i] = float32(r.Intn(2)) // pseudo-label masks
					} else {
						v[i] = r.Float32()
					}
				}
				batches[fmt.Sprintf("r%d_s%d_%s", rank, s, k)] = torchx.FromFloat32(v, ddpBatch, 1, ddpCrop, ddpCrop)
			}
		}
	}
	if err := torchx.SaveStateDict(filepath.Join(dir, "batches.pt"), batches); err != nil {
		t.Fatal(err)
	}
	mc := c.Model
	spec, _ := json.Marshal(map[string]any{
		"model": map[string]any{"pl": true, "radius": mc.Radius, "width": mc.Width, "stages": mc.Stages,
			"blocks_per_stage": mc.BlocksPerStage, "feature_dim": mc.FeatureDim, "edge_radius": mc.EdgeRadius,
			"separate_pl_encoder": mc.SeparatePLEncoder, "geig": map[string]any{"directions": mc.GEIG.Directions, "scales": mc.GEIG.Scales}},
		"lr": c.Train.LR, "weight_decay": c.Train.WeightDecay, "steps": ddpSteps, "intensity_scale": c.Data.IntensityScale,
	})
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ddpWorker is one rank of the Go side: the trainer's own Stepper with dist.DDP.
func ddpWorker(dir string) error {
	defer torchx.PinThread()()
	g, err := dist.InitFromEnviron(dist.Gloo, time.Minute)
	if err != nil {
		return err
	}
	defer g.Close()
	torchx.SetNumThreads(1)
	c := tinyConfigOf(configs.ModeSli2VolPlus)
	return torchx.Try(func() {
		m, _ := runs.NewCFN(c.Model)
		sd, err := torchx.LoadStateDict(filepath.Join(dir, "weights.pt"))
		if err == nil {
			err = models.LoadStateDict(m, sd)
		}
		if err != nil {
			panic(&torchx.Error{Msg: err.Error()})
		}
		models.SetTraining(m, true)
		opt, _ := NewOptimizer(c.Train, models.Parameters(m), ddpSteps)
		defer opt.Close()
		ddp, err := dist.NewDDP(g, models.Parameters(m), models.Buffers(m), dist.DefaultBucketCapMB)
		if err != nil {
			panic(&torchx.Error{Msg: err.Error()})
		}
		defer ddp.Close()
		st := &Stepper{Cfg: c, Model: m, Opt: opt, Device: "cpu", Sync: ddp}
		batches, err := torchx.LoadStateDict(filepath.Join(dir, "batches.pt"))
		if err != nil {
			panic(&torchx.Error{Msg: err.Error()})
		}
		for s := 0; s < ddpSteps; s++ {
			k := func(name string) []float32 {
				return torchx.Float32s(batches[fmt.Sprintf("r%d_s%d_%s", g.Rank(), s, name)])
			}
			b := data.Batch{A: k("a"), B: k("b"), PLA: k("pla"), PLB: k("plb"), Size: ddpBatch, Crop: ddpCrop}
			if _, err := st.Step(b); err != nil {
				panic(&torchx.Error{Msg: err.Error()})
			}
		}
		out := filepath.Join(dir, fmt.Sprintf("go_rank%d.pt", g.Rank()))
		if err := torchx.SaveStateDict(out, models.StateDict(m)); err != nil {
			panic(&torchx.Error{Msg: err.Error()})
		}
	})
}

package bench

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/internal/tensortest"
	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// One data-parallel UNETR++ SGD step (Dice + CE with deep supervision, gradient clipping,
// Nesterov momentum) is PyTorch DDP's: both launched by torchrun as two Gloo processes from
// the same weights, each rank on its half of the same patch batch; every parameter and buffer
// equal to 1e-5 on both ranks.
func TestUNETRDDPMatchesPyTorch(t *testing.T) {
	py := testpy.Find(t, "torch")
	if !dist.Available(dist.Gloo) {
		t.Skip("this libtorch build has no Gloo process group")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tiny.yaml")
	os.WriteFile(cfg, []byte("unetr: {patch_size: [16, 32, 32], feature_size: 4, dims: [8, 16, 32, 64], depths: [1, 1, 1, 1], "+
		"heads: 2, proj_size: [8, 8, 8, 4], decoder_proj_size: 8, decoder_depth: 1, grad_clip: 0.5}\n"), 0o644)
	c, err := configs.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := PrepareUNETR(dir, cfg, c, 4); err != nil {
		t.Fatal(err)
	}
	torchrun := func() []string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return []string{"-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
			strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "--redirects", "1", "--tee", "1"}
	}
	goRun := exec.Command(py, append(torchrun(), "--no_python", os.Args[0], "-test.run=^$")...)
	goRun.Env = append(os.Environ(), "SLI2VOL_DDP_UNETR="+dir)
	if out, err := goRun.CombinedOutput(); err != nil {
		t.Fatalf("torchrun of the Go workers: %v\n%s", err, out)
	}
	ref := filepath.Join("pytorch", "ddp_ref.py")
	if out, err := exec.Command(py, append(torchrun(), ref, "unetr", dir)...).CombinedOutput(); err != nil {
		t.Fatalf("torchrun of PyTorch DDP: %v\n%s", err, out)
	}
	init := tensortest.ReadState(t, filepath.Join(dir, "weights.pt"))
	moved := 0.0
	for rank := 0; rank < 2; rank++ {
		want := tensortest.ReadState(t, filepath.Join(dir, fmt.Sprintf("py_unetr_rank%d.pt", rank)))
		got := tensortest.ReadState(t, filepath.Join(dir, fmt.Sprintf("go_unetr_rank%d.pt", rank)))
		if len(got) != len(want) {
			t.Fatalf("rank %d: Go %d tensors, PyTorch %d", rank, len(got), len(want))
		}
		for name, w := range want {
			for i := range w {
				if d := math.Abs(got[name][i] - w[i]); d > 1e-5*math.Max(1, math.Abs(w[i])) || math.IsNaN(d) {
					t.Fatalf("rank %d: %s[%d] Go %g, PyTorch %g", rank, name, i, got[name][i], w[i])
				}
				moved = math.Max(moved, math.Abs(w[i]-init[name][i]))
			}
		}
	}
	if moved < 1e-5 {
		t.Fatalf("the step moved the weights by at most %g: nothing was compared", moved)
	}
}

// unetrDDPWorker is one rank of the Go side: bench's UNETR++ step with dist.DDP, on its part
// of the batch.
func unetrDDPWorker(dir string) error {
	defer torchx.PinThread()()
	g, err := dist.InitFromEnviron(dist.Gloo, time.Minute)
	if err != nil {
		return err
	}
	defer g.Close()
	torchx.SetNumThreads(1)
	st, b, closeOpt, err := LoadUNETRStep(dir, "cpu")
	if err != nil {
		return err
	}
	defer closeOpt()
	ddp, err := dist.NewDDP(g, models.Parameters(st.Model), models.Buffers(st.Model), dist.DefaultBucketCapMB)
	if err != nil {
		return err
	}
	defer ddp.Close()
	st.Sync = ddp
	if _, err := st.Step(b.Part(g.Rank(), g.Size())); err != nil {
		return err
	}
	return torchx.SaveStateDict(filepath.Join(dir, fmt.Sprintf("go_unetr_rank%d.pt", g.Rank())), models.StateDict(st.Model))
}

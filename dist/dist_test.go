package dist

import (
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/internal/syncbuf"
	"github.com/sli2vol/sli2vol/torchx"
)

func TestFromEnviron(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name string
		get  func(string) string
		ok   bool
		want Env
		err  string
	}{
		{"single process", env(), false, Env{}, ""},
		{"world of one", env("WORLD_SIZE", "1"), false, Env{}, ""},
		{"torchrun", env("RANK", "3", "WORLD_SIZE", "4", "LOCAL_RANK", "1", "LOCAL_WORLD_SIZE", "2", "MASTER_ADDR", "n0", "MASTER_PORT", "29400"),
			true, Env{Rank: 3, WorldSize: 4, LocalRank: 1, LocalWorldSize: 2, MasterAddr: "n0", MasterPort: 29400}, ""},
		{"kubeflow (no local rank)", env("RANK", "1", "WORLD_SIZE", "2", "MASTER_ADDR", "job-master-0", "MASTER_PORT", "23456"),
			true, Env{Rank: 1, WorldSize: 2, LocalRank: 0, LocalWorldSize: 1, MasterAddr: "job-master-0", MasterPort: 23456}, ""},
		{"srun step", env("SLURM_STEP_ID", "0", "SLURM_PROCID", "5", "SLURM_STEP_NUM_TASKS", "6", "SLURM_LOCALID", "2",
			"SLURM_STEP_TASKS_PER_NODE", "3(x2)", "MASTER_ADDR", "gpu01"),
			true, Env{Rank: 5, WorldSize: 6, LocalRank: 2, LocalWorldSize: 3, MasterAddr: "gpu01", MasterPort: 29500}, ""},
		{"sbatch script, not srun", env("SLURM_NTASKS", "4", "SLURM_PROCID", "0", "SLURM_NTASKS_PER_NODE", "4"), false, Env{}, ""},
		{"torchrun's agent store", env("RANK", "1", "WORLD_SIZE", "2", "MASTER_ADDR", "h", "MASTER_PORT", "29501",
			"TORCHELASTIC_USE_AGENT_STORE", "True", "TORCHELASTIC_RESTART_COUNT", "3"),
			true, Env{Rank: 1, WorldSize: 2, LocalWorldSize: 1, MasterAddr: "h", MasterPort: 29501, AgentStore: true, RestartCount: 3}, ""},
		{"no master", env("RANK", "0", "WORLD_SIZE", "2"), true, Env{}, "MASTER_ADDR is not set"},
		{"rank too large", env("RANK", "2", "WORLD_SIZE", "2", "MASTER_ADDR", "h"), true, Env{}, "RANK 2 is outside 0..1"},
		{"not a number", env("RANK", "x", "WORLD_SIZE", "2", "MASTER_ADDR", "h"), false, Env{}, `RANK="x" is not a count`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok, err := FromEnviron(tc.get)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || ok != tc.ok || (ok && e != tc.want) {
				t.Fatalf("got %+v %v %v, want %+v %v", e, ok, err, tc.want, tc.ok)
			}
		})
	}
}

// The workers of these tests are this test binary, started by Launch with
// SLI2VOL_DIST_TEST naming what to do.
func TestMain(m *testing.M) {
	if w := os.Getenv("SLI2VOL_DIST_TEST"); w != "" {
		if err := worker(w); err != nil {
			fmt.Fprintf(os.Stderr, "worker %s: %v\n", os.Getenv("RANK"), err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func launch(t *testing.T, what string, n int, grace time.Duration) (int, string) {
	t.Helper()
	if !Available(Gloo) {
		t.Skip("this libtorch build has no Gloo process group")
	}
	var out syncbuf.Buffer
	t.Setenv("SLI2VOL_DIST_TEST", what)
	code, err := Launch(LaunchOptions{Exe: os.Args[0], NProc: n, NNodes: 1, Stdout: &out, Stderr: &out, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

// Two real processes: sums, maxima, broadcasts of tensors and bytes, and DDP's gradient
// average, each against values computed by hand.
func TestCollectivesAndDDP(t *testing.T) {
	if code, out := launch(t, "collectives", 2, 0); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// SyncBatchNorm on two ranks is batch norm on their concatenated batch: outputs, input
// gradients and running statistics on each rank, and the weight and bias gradients summed
// over the ranks, against torchx.BatchNorm in one process.
func TestSyncBatchNorm(t *testing.T) {
	if code, out := launch(t, "syncbn", 2, 0); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// A rank killed with SIGKILL ends the other with an error naming the failed collective
// within the group's timeout, never a hang; the launcher reports the killed rank.
func TestLostRank(t *testing.T) {
	start := time.Now()
	code, out := launch(t, "lost", 2, 30*time.Second)
	if code == 0 || !strings.Contains(out, "rank 1 exited with status 137") ||
		!strings.Contains(out, "rank 0 of 2: all-reduce failed") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Fatalf("rank 0 noticed after %v", d)
	}
}

// In a group of three, the rank that died is named by its stale heartbeat.
func TestLostRankNamed(t *testing.T) {
	code, out := launch(t, "lost3", 3, 30*time.Second)
	if code == 0 || !strings.Contains(out, "rank 0 of 3: all-reduce failed (rank 2 stopped") ||
		!strings.Contains(out, "rank 1 of 3: all-reduce failed (rank 2 stopped") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func worker(what string) error {
	g, err := InitFromEnviron(Gloo, 10*time.Second)
	if err != nil {
		return err
	}
	defer g.Close()
	switch what {
	case "collectives":
		return collectives(g)
	case "syncbn":
		return syncBatchNorm(g)
	case "lost3":
		// One collective first: every pair of the gloo mesh is connected before rank 2 dies
		// (dying during the others' connect fails them in Init, not in the all-reduce).
		if _, err := g.AllReduceScalars(false, 1); err != nil {
			return err
		}
		if g.Rank() == 2 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		time.Sleep(3*heartbeatEvery + 500*time.Millisecond) // rank 2's last stamp goes stale
		_, err := g.AllReduceScalars(false, 1)
		if err == nil {
			return fmt.Errorf("all-reduce without rank 2 succeeded")
		}
		return err
	case "lost":
		if _, err := g.AllReduceScalars(false, 1); err != nil { // the mesh is whole: see lost3
			return err
		}
		if g.Rank() == 1 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		time.Sleep(500 * time.Millisecond)
		_, err := g.AllReduceScalars(false, 1)
		if err == nil {
			return fmt.Errorf("all-reduce without rank 1 succeeded")
		}
		return err
	}
	return fmt.Errorf("unknown worker %q", what)
}

func collectives(g *Group) error {
	r := float64(g.Rank())
	sum, err := g.AllReduceScalars(false, r+1, 10*r)
	if err != nil || sum[0] != 3 || sum[1] != 10 {
		return fmt.Errorf("sum %v %v, want [3 10]", sum, err)
	}
	mx, err := g.AllReduceScalars(true, r+1)
	if err != nil || mx[0] != 2 {
		return fmt.Errorf("max %v %v, want [2]", mx, err)
	}
	b, err := g.BroadcastBytes([]byte(fmt.Sprintf("from rank %d", g.Rank())), 1)
	if err != nil || string(b) != "from rank 1" {
		return fmt.Errorf("bytes %q %v", b, err)
	}
	// First: rank 0's work, its error every rank's; the others wait by polling the store.
	ran := false
	if err := g.First(func() error { time.Sleep(300 * time.Millisecond); ran = true; return nil }, 50*time.Millisecond); err != nil || ran != (g.Rank() == 0) {
		return fmt.Errorf("First: %v (ran here: %v)", err, ran)
	}
	if err := g.First(func() error { return fmt.Errorf("boom") }, 50*time.Millisecond); err == nil || !strings.HasSuffix(err.Error(), "boom") {
		return fmt.Errorf("First's error on rank %d: %v", g.Rank(), err)
	}
	all, err := g.AllGatherBytes([]byte(strings.Repeat("x", g.Rank()+1)))
	if err != nil || len(all) != 2 || string(all[0]) != "x" || string(all[1]) != "xx" {
		return fmt.Errorf("all-gather %q %v", all, err)
	}
	// DDP: rank-dependent initial weights become rank 0's; the gradient of
	// sum(w ⊙ x_rank) is x_rank, averaged over the ranks: ((1,2,3) + (3,4,5)) / 2.
	var terr error
	terr = torchx.Try(func() {
		w := torchx.FromFloat32([]float32{float32(r), 7, 7}, 3)
		torchx.SetRequiresGrad(w, true)
		buf := torchx.FromFloat32([]float32{float32(r + 5)}, 1)
		ddp, err := NewDDP(g, []torchx.Tensor{w}, []torchx.Tensor{buf}, 0)
		if err != nil {
			terr = err
			return
		}
		defer ddp.Close()
		opt := torchx.NewSGD([]torchx.Tensor{w}, torchx.SGDOpts{LR: 0})
		defer opt.Close()
		if v := torchx.Float32s(w); v[0] != 0 {
			terr = fmt.Errorf("weights after NewDDP %v, want rank 0's", v)
			return
		}
		for step := 0; step < 2; step++ {
			ddp.BeforeForward()
			x := torchx.FromFloat32([]float32{float32(1 + 2*r), float32(2 + 2*r), float32(3 + 2*r)}, 3)
			loss := torchx.Sum(torchx.Mul(w, x), false)
			ddp.BeforeBackward()
			torchx.Backward(loss)
			gr := torchx.Float32s(torchx.Grad(w))
			if gr[0] != 2 || gr[1] != 3 || gr[2] != 4 {
				terr = fmt.Errorf("step %d: averaged gradient %v, want [2 3 4]", step, gr)
				return
			}
			opt.ZeroGrad()
		}
		if v := torchx.Float32s(buf); v[0] != 5 {
			terr = fmt.Errorf("buffer %v, want rank 0's 5", v)
		}
		if l := ddp.AverageLoss(float64(g.Rank()) * 4); l != 2 {
			terr = fmt.Errorf("average loss %v, want 2", l)
		}
	})
	if terr != nil {
		return terr
	}
	return nil
}

// A busy port on rank 0 and a master nobody serves end Init with one line naming the
// address, within the timeout.
func TestRendezvousErrors(t *testing.T) {
	if !Available(Gloo) {
		t.Skip("this libtorch build has no Gloo process group")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	_, err = Init(Env{Rank: 0, WorldSize: 2, LocalWorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: busy}, Gloo, 3*time.Second)
	want := fmt.Sprintf("rank 0: serving the rendezvous on 127.0.0.1:%d", busy)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("busy port: %v", err)
	}
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	start := time.Now()
	_, err = Init(Env{Rank: 1, WorldSize: 2, LocalWorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: port}, Gloo, 2*time.Second)
	want = fmt.Sprintf("rank 1: reaching the rendezvous at 127.0.0.1:%d", port)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("no master: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("no master: the error came after %v (timeout 2 s)", d)
	}
}

func syncBatchNorm(g *Group) error {
	var terr error
	err := torchx.Try(func() {
		torchx.ManualSeed(3) // the same inputs on both ranks; each takes its half
		const c = 3
		xAll := torchx.AddScalar(torchx.MulScalar(torchx.Randn([]int64{4, c, 5, 5}, torchx.Float32, "cpu"), 2), 1)
		coef := torchx.Randn([]int64{4, c, 5, 5}, torchx.Float32, "cpu")
		w := torchx.Randn([]int64{c}, torchx.Float32, "cpu")
		b := torchx.Randn([]int64{c}, torchx.Float32, "cpu")
		half := func(t torchx.Tensor) torchx.Tensor { return torchx.Narrow(t, 0, int64(2*g.Rank()), 2) }
		leaf := func(t torchx.Tensor) torchx.Tensor {
			t = torchx.Detach(torchx.Mul(t, torchx.FromFloat32([]float32{1}, 1)))
			torchx.SetRequiresGrad(t, true)
			return t
		}
		// One process: batch norm of all four samples.
		x1, w1, b1 := leaf(xAll), leaf(w), leaf(b)
		rm1, rv1 := torchx.Zeros([]int64{c}, torchx.Float32, "cpu"), torchx.Full([]int64{c}, 1, torchx.Float32, "cpu")
		out1 := torchx.BatchNorm(x1, w1, b1, rm1, rv1, true, 0.1, 1e-5)
		torchx.Backward(torchx.Sum(torchx.Mul(out1, coef), false))
		// Two ranks: each its half.
		x2, w2, b2 := leaf(half(xAll)), leaf(w), leaf(b)
		rm2, rv2 := torchx.Zeros([]int64{c}, torchx.Float32, "cpu"), torchx.Full([]int64{c}, 1, torchx.Float32, "cpu")
		out2 := g.SyncBatchNorm().BatchNorm(x2, w2, b2, rm2, rv2, 0.1, 1e-5)
		torchx.Backward(torchx.Sum(torchx.Mul(out2, half(coef)), false))
		gw, gb := torchx.Grad(w2), torchx.Grad(b2)
		if err := g.AllReduceSum(gw, gb); err != nil {
			terr = err
			return
		}
		for _, cmp := range []struct {
			name      string
			got, want torchx.Tensor
		}{
			{"output", out2, half(out1)}, {"input gradient", torchx.Grad(x2), half(torchx.Grad(x1))},
			{"weight gradient", gw, torchx.Grad(w1)}, {"bias gradient", gb, torchx.Grad(b1)},
			{"running mean", rm2, rm1}, {"running variance", rv2, rv1},
		} {
			a, e := torchx.Float32s(cmp.got), torchx.Float32s(cmp.want)
			for i := range e {
				if d := math.Abs(float64(a[i] - e[i])); d > 1e-4*math.Max(1, math.Abs(float64(e[i]))) {
					terr = fmt.Errorf("%s[%d]: %v on rank %d, %v in one process", cmp.name, i, a[i], g.Rank(), e[i])
					return
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return terr
}

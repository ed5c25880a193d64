package main

import (
	"bytes"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/internal/syncbuf"
	"github.com/sli2vol/sli2vol/internal/tensortest"
)

// The workers of a --nproc launch in these tests are this test binary (os.Executable):
// signal_test.go's TestMain runs the command line it is given under SLI2VOL_TEST_CLI=1.

// runLaunch runs a command line that launches workers.
func runLaunch(args ...string) (int, string, string) {
	var o, e syncbuf.Buffer
	code := run(args, &o, &e)
	return code, o.String(), e.String()
}

// distSetup writes two phantoms and a tiny config whose training takes a few seconds.
func distSetup(t *testing.T, epochs int) (dir, cfg string) {
	if !dist.Available(dist.Gloo) {
		t.Skip("this libtorch build has no Gloo process group")
	}
	t.Setenv("SLI2VOL_TEST_CLI", "1")
	dir = t.TempDir()
	if err := data.WritePhantomDataset(filepath.Join(dir, "ph"), 2, 1, [3]int{32, 32, 8}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "tiny.yaml")
	os.WriteFile(cfg, []byte("device: cpu\nthreads: 1\ndata: {resize_range: [32, 36], crop: 32}\n"+
		"model: {mode: sli2vol, width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2}\n"+
		"train: {batch_size: 2, lr: 1.0e-3, checkpoint_every: 3, epochs: "+strconv.Itoa(epochs)+"}\ndist: {timeout_s: 20}\n"), 0o644)
	return dir, cfg
}

// waitForSteps waits until a run's metrics log has n lines.
func waitForSteps(t *testing.T, run string, n int) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl")); err == nil && bytes.Count(b, []byte("\n")) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: no %d steps after a minute", run, n)
}

// Two processes train (--nproc 2): rank 0 alone writes the run folder and reports; SIGTERM
// stops both ranks at one step with a checkpoint and exit 143; --resume with the same world
// size ends bit-identical to the uninterrupted run, and with another world size it continues
// and says that the sample order changes.
func TestDistributedTrainAndResume(t *testing.T) {
	dir, cfg := distSetup(t, 16)
	p := func(s string) string { return filepath.Join(dir, s) }
	train := func(out string, extra ...string) (int, string, string) {
		return runLaunch(append([]string{"train", "--config", cfg, "--data", p("ph"), "--out", out}, extra...)...)
	}
	code, stdout, stderr := train(p("full"), "--nproc", "2")
	if code != 0 || strings.Count(stdout, "trained sli2vol") != 1 {
		t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	metrics, _ := os.ReadFile(p("full/metrics.jsonl"))
	// 2 volumes × 7 pairs, 7 per rank, batches of 2: 4 steps an epoch.
	if n := bytes.Count(metrics, []byte("\n")); n != 64 || !bytes.Contains(metrics, []byte(`"world_size":2`)) {
		t.Fatalf("metrics.jsonl: %d lines\n%s", n, metrics)
	}
	// Interrupted by SIGTERM while training.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, _, stderr = train(p("split"), "--nproc", "2")
	}()
	waitForSteps(t, p("split"), 2)
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	wg.Wait()
	if code != 143 || !strings.Contains(stderr, "interrupted by terminated") {
		t.Fatalf("SIGTERM: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(p("split/model.pt")); err == nil {
		t.Fatal("an interrupted run wrote its final model")
	}
	copyDir(t, p("split"), p("split1"))
	if code, _, stderr := train(p("split"), "--nproc", "2", "--resume"); code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, stderr)
	}
	a, _ := os.ReadFile(p("full/model.pt"))
	b, _ := os.ReadFile(p("split/model.pt"))
	if !bytes.Equal(a, b) {
		t.Fatal("the resumed 2-process run differs from the uninterrupted one")
	}
	code, _, stderr = train(p("split1"), "--resume")
	if code != 0 || !strings.Contains(stderr, "resuming a run of 2 process(es) with 1: the order of the samples changes") {
		t.Fatalf("resume on one process: exit %d\n%s", code, stderr)
	}
	// One process: 14 pairs an epoch in batches of 2, 7 steps; the run ends at 16 epochs.
	m1, _ := os.ReadFile(p("split1/metrics.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(m1)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `"step":112,`) || !strings.Contains(last, `"epoch":15,`) {
		t.Fatalf("the resumed one-process run ended at %s", last)
	}
}

func copyDir(t *testing.T, from, to string) {
	os.MkdirAll(to, 0o755)
	entries, _ := os.ReadDir(from)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o644)
	}
}

// A rank killed with SIGKILL: the launcher names it, the other rank fails with an error
// naming the failed collective within dist.timeout_s, and the launch exits non-zero.
func TestDistributedLostRank(t *testing.T) {
	dir, cfg := distSetup(t, 200)
	out := filepath.Join(dir, "run")
	var code int
	var stderr string
	done := make(chan bool)
	go func() {
		code, _, stderr = runLaunch("train", "--config", cfg, "--data", filepath.Join(dir, "ph"), "--out", out, "--nproc", "2")
		close(done)
	}()
	waitForSteps(t, out, 1)
	pid := childWithRank(t, 1)
	start := time.Now()
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		t.Fatal("the launch did not end 45 s after rank 1 was killed")
	}
	if code == 0 || !strings.Contains(stderr, "rank 1 exited with status 137") || !strings.Contains(stderr, "rank 0 of 2:") {
		t.Fatalf("exit %d after %v\n%s", code, time.Since(start), stderr)
	}
}

// childWithRank finds this process's child whose environment says RANK=rank.
func childWithRank(t *testing.T, rank int) int {
	me := strconv.Itoa(os.Getpid())
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		stat, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != me {
			continue
		}
		env, _ := os.ReadFile(filepath.Join(p, "environ"))
		if bytes.Contains(env, []byte("\x00RANK="+strconv.Itoa(rank)+"\x00")) || bytes.HasPrefix(env, []byte("RANK="+strconv.Itoa(rank)+"\x00")) {
			pid, _ := strconv.Atoi(filepath.Base(p))
			return pid
		}
	}
	t.Fatalf("no child with RANK=%d", rank)
	return 0
}

// Two launchers, one a node (--nnodes 2, --node-rank 0/1), train one run over loopback.
func TestDistributedTwoNodes(t *testing.T) {
	dir, cfg := distSetup(t, 2)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	out := filepath.Join(dir, "run")
	codes := make([]int, 2)
	errs := make([]string, 2)
	var wg sync.WaitGroup
	for node := 0; node < 2; node++ {
		wg.Add(1)
		go func(node int) {
			defer wg.Done()
			codes[node], _, errs[node] = runLaunch("train", "--config", cfg, "--data", filepath.Join(dir, "ph"), "--out", out,
				"--nproc", "1", "--nnodes", "2", "--node-rank", strconv.Itoa(node), "--master-port", port)
		}(node)
	}
	wg.Wait()
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("exits %v\n%s\n%s", codes, errs[0], errs[1])
	}
	metrics, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if !bytes.Contains(metrics, []byte(`"world_size":2`)) {
		t.Fatalf("metrics.jsonl:\n%s", metrics)
	}
}

// SyncBatchNorm makes two processes of batch 2 train as one process of batch 4: the same
// weights and batch-norm statistics after two epochs (8 steps), to 1e-5.
func TestSyncBatchNormEqualsOneProcess(t *testing.T) {
	dir, cfg := distSetup(t, 2)
	p := func(s string) string { return filepath.Join(dir, s) }
	if code, _, e := runLaunch("train", "--config", cfg, "--data", p("ph"), "--out", p("two"), "--nproc", "2"); code != 0 {
		t.Fatalf("2 processes: exit %d\n%s", code, e)
	}
	t.Setenv("SLI2VOL_DIST_SYNC_BATCHNORM", "true")
	if code, _, e := runLaunch("train", "--config", cfg, "--data", p("ph"), "--out", p("sync"), "--nproc", "2"); code != 0 {
		t.Fatalf("2 processes, SyncBatchNorm: exit %d\n%s", code, e)
	}
	if code, _, e := runLaunch("train", "--config", cfg, "--data", p("ph"), "--out", p("one"), "--batch-size", "4"); code != 0 {
		t.Fatalf("1 process: exit %d\n%s", code, e)
	}
	one, sync, two := tensortest.ReadState(t, filepath.Join(p("one"), "model.pt")), tensortest.ReadState(t, filepath.Join(p("sync"), "model.pt")), tensortest.ReadState(t, filepath.Join(p("two"), "model.pt"))
	for name, w := range one {
		for i := range w {
			if d := math.Abs(sync[name][i] - w[i]); d > 1e-5*math.Max(1, math.Abs(w[i])) {
				t.Fatalf("%s[%d]: 2 × 2 with SyncBatchNorm %g, 1 × 4 %g", name, i, sync[name][i], w[i])
			}
		}
	}
	// Without it the ranks' statistics are their own, and the runs differ.
	differ := false
	for name, w := range one {
		for i := range w {
			differ = differ || math.Abs(two[name][i]-w[i]) > 1e-4
		}
	}
	if !differ {
		t.Fatal("per-rank batch norm gave the one-process result too: the comparison tests nothing")
	}
}

// pseudo-label on two processes splits the cases and writes what one process writes: the
// same label files and the same annotations.json.
func TestDistributedPseudoLabels(t *testing.T) {
	dir, cfg := distSetup(t, 1)
	p := func(s string) string { return filepath.Join(dir, s) }
	if err := data.WritePhantomDataset(p("three"), 3, 4, [3]int{32, 32, 8}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, _, e := runLaunch("train", "--config", cfg, "--data", p("ph"), "--out", p("run")); code != 0 {
		t.Fatalf("train: exit %d\n%s", code, e)
	}
	if code, _, e := runLaunch("pseudo-label", "--config", cfg, "--model", p("run"), "--data", p("three"), "--out", p("one")); code != 0 {
		t.Fatalf("one process: exit %d\n%s", code, e)
	}
	code, stdout, e := runLaunch("pseudo-label", "--config", cfg, "--model", p("run"), "--data", p("three"), "--out", p("two"), "--nproc", "2")
	if code != 0 || strings.Count(stdout, "pseudo-labels for 3 cases") != 1 {
		t.Fatalf("two processes: exit %d, stdout %q\n%s", code, stdout, e)
	}
	sameFiles(t, p("one"), p("two"), "annotations.json", "labelsTr/phantom_000.nii.gz", "labelsTr/phantom_001.nii.gz", "labelsTr/phantom_002.nii.gz")
	// evaluate splits the cases too: the same tables and figures as one process.
	if code, _, e := runLaunch("evaluate", "--config", cfg, "--model", p("run"), "--data", p("three"), "--out", p("rep1")); code != 0 {
		t.Fatalf("evaluate, one process: exit %d\n%s", code, e)
	}
	code, stdout, e = runLaunch("evaluate", "--config", cfg, "--model", p("run"), "--data", p("three"), "--out", p("rep2"), "--nproc", "2")
	if code != 0 || strings.Count(stdout, "report: ") != 1 {
		t.Fatalf("evaluate, two processes: exit %d, stdout %q\n%s", code, stdout, e)
	}
	sameFiles(t, p("rep1"), p("rep2"), "results.csv", "drift.csv", "report.md", "overlays/phantom_000.png", "overlays/phantom_001.png", "overlays/phantom_002.png")
}

func sameFiles(t *testing.T, a, b string, files ...string) {
	t.Helper()
	for _, f := range files {
		x, errA := os.ReadFile(filepath.Join(a, f))
		y, errB := os.ReadFile(filepath.Join(b, f))
		if errA != nil || errB != nil || !bytes.Equal(x, y) {
			t.Fatalf("%s differs between one and two processes (%v, %v)", f, errA, errB)
		}
	}
}

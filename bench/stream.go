package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The data-streaming rows (#18): `sli2vol train` itself, run as a child process on phantom
// datasets, reading its data in memory, within data.max_resident_gb, or from a prepared
// cache. A child is stopped by SIGTERM once its metrics.jsonl has the steps wanted (the
// trainer ends the step, writes a checkpoint and exits 143). Its peak RSS is the VmHWM of
// /proc/PID/status, read while it runs: its rusage's ru_maxrss would not do, because Go
// starts children with vfork, and the kernel records the parent's high-water mark (this
// bench process, libtorch loaded) as the child's when the child execs.

// trainChild is one `sli2vol train` run.
type trainChild struct {
	data, pseudo, out string   // dataset, pseudo-labels (phantom labels stand in), run folder
	config            string   // --config
	env               []string // SLI2VOL_* overrides of the config
	steps             int      // SIGTERM once metrics.jsonl has this many lines
}

// childRun is what one child showed.
type childRun struct {
	peakRSSMiB float64       // VmHWM of the child
	firstStep  time.Duration // from just before its start to its first metrics line
	rates      []float64     // samples_per_s of each step, in order
}

// runTrainChild runs t and watches its metrics.jsonl (polled every 10 ms: the first line's
// time is known to that).
func runTrainChild(bin string, t trainChild) (*childRun, error) {
	if err := os.RemoveAll(t.out); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	args := []string{"train", "--config", t.config, "--data", t.data, "--out", t.out}
	if t.pseudo != "" {
		args = append(args, "--pseudo", t.pseudo)
	}
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), t.env...)
	var errb bytes.Buffer
	c.Stdout, c.Stderr = io.Discard, &errb
	t0 := time.Now()
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	res := &childRun{}
	metrics := filepath.Join(t.out, "metrics.jsonl")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var size int64
	signalled := false
	var werr error
	for werr == nil {
		select {
		case werr = <-done:
			if werr == nil {
				werr = errExited
			}
			continue
		case <-tick.C:
		}
		if hwm := procRSSMiB(c.Process.Pid, "VmHWM"); hwm > res.peakRSSMiB {
			res.peakRSSMiB = hwm // a high-water mark: the last reading is the peak so far
		}
		st, err := os.Stat(metrics)
		if err != nil || st.Size() == size {
			continue
		}
		size = st.Size()
		if res.firstStep == 0 {
			res.firstStep = time.Since(t0)
		}
		if n := countLines(metrics); n >= t.steps && !signalled {
			// The run ends after this step, as on a user's ^C; what it finished is kept.
			signalled = c.Process.Signal(syscall.SIGTERM) == nil
		}
	}
	if err := childExit(werr, signalled); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, tail(errb.String(), 400))
	}
	var err error
	res.rates, err = readRates(metrics)
	return res, err
}

// procRSSMiB reads a memory field of process pid (0 once it is gone).
func procRSSMiB(pid int, field string) float64 {
	return statusMiB(fmt.Sprintf("/proc/%d/status", pid), field)
}

// errExited: the child exited by itself (status 0).
var errExited = errors.New("exited")

// childExit is nil for a child that finished, or that ended on the SIGTERM sent to it
// (status 143 from the trainer's interrupt handling).
func childExit(err error, signalled bool) error {
	if err == errExited {
		return nil
	}
	var ee *exec.ExitError
	if signalled && errors.As(err, &ee) && ee.ExitCode() == 128+int(syscall.SIGTERM) {
		return nil
	}
	return err
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte{'\n'})
}

// readRates reads the per-step samples_per_s of a run's metrics.jsonl.
func readRates(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			SamplesPerS float64 `json:"samples_per_s"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, l.SamplesPerS)
	}
	return out, sc.Err()
}

// steady is the median samples/s after the first warm steps (the first step's figure
// includes the first batch and libtorch's first-call work) and the throughput over the same
// steps: n·B over the sum of their times, the harmonic mean of the rates.
func steady(rates []float64, warm int) (med, thr float64) {
	if len(rates) <= warm {
		return 0, 0
	}
	r := rates[warm:]
	var inv float64
	for _, x := range r {
		inv += 1 / x
	}
	return summarize(r).med, float64(len(r)) / inv
}

// ensurePhantoms writes n phantom cases of shape to dir with `sli2vol phantom` unless a
// previous bench left them there (dataset.json is written last).
func ensurePhantoms(o RunOptions, dir string, n int, shape [3]int) error {
	if _, err := os.Stat(filepath.Join(dir, "dataset.json")); err == nil {
		return nil
	}
	o.Log("stream: writing %d phantom cases of %d×%d×%d to %s", n, shape[0], shape[1], shape[2], dir)
	size := fmt.Sprintf("%d,%d,%d", shape[0], shape[1], shape[2])
	if _, err := runJSONOrNil(o.Sli2vol, "phantom", "--out", dir, "--cases", fmt.Sprint(n), "--size", size, "--force"); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return nil
}

// subsetManifest writes a dataset manifest of the first n phantom cases of dir (their
// pseudo-labels stay dir's labelsTr) and returns its path.
func subsetManifest(dir string, n int) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: first-%d\ncases:\n", n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("phantom_%03d", i)
		fmt.Fprintf(&b, "  - {id: %s, image: %s, label: %s}\n", name,
			filepath.Join(abs, "imagesTr", name+".nii.gz"), filepath.Join(abs, "labelsTr", name+".nii.gz"))
	}
	path := fmt.Sprintf("%s-first%d.yaml", abs, n)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("stream: %w", err)
	}
	return path, nil
}

// prepareCache makes cacheDir afresh from data with `sli2vol prepare` (the settings in env)
// and returns how long it took.
func prepareCache(o RunOptions, config, data, cacheDir string, env []string) (time.Duration, error) {
	if err := os.RemoveAll(cacheDir); err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	c := exec.Command(o.Sli2vol, "prepare", "--config", config, "--data", data, "--pseudo", data, "--out", cacheDir)
	c.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	c.Stderr = &errb
	t0 := time.Now()
	if err := c.Run(); err != nil {
		return 0, fmt.Errorf("stream: sli2vol prepare %s: %w: %s", data, err, tail(errb.String(), 400))
	}
	return time.Since(t0), nil
}

// trainEnv are the config overrides of a streaming row's runs: the crop, resize range and
// batch given, the bench's device and threads, checkpoints only when stopped, and epochs
// enough never to end before the bench stops the run.
func trainEnv(o RunOptions, crop, resizeHi, batch int) []string {
	return []string{
		"SLI2VOL_DEVICE=" + o.Device, fmt.Sprint("SLI2VOL_THREADS=", o.Threads),
		fmt.Sprint("SLI2VOL_DATA_CROP=", crop), fmt.Sprintf("SLI2VOL_DATA_RESIZE_RANGE=%d,%d", crop, resizeHi),
		fmt.Sprint("SLI2VOL_TRAIN_BATCH_SIZE=", batch), "SLI2VOL_TRAIN_EPOCHS=100000",
		"SLI2VOL_TRAIN_CHECKPOINT_EVERY=0", "SLI2VOL_MODEL_MODE=sli2vol+",
	}
}

// streamRows runs the data-streaming rows the options ask for, each appending its section.
func streamRows(o RunOptions, md *strings.Builder) error {
	if o.StreamSteps <= 0 && o.FirstStepCases <= 0 && o.TrainerSteps <= 0 {
		return nil
	}
	if o.Sli2vol == "" {
		return fmt.Errorf("stream: the streaming rows run bin/sli2vol: RunOptions.Sli2vol is empty")
	}
	if o.StreamSteps > 0 {
		if err := memoryBoundRow(o, md); err != nil {
			return err
		}
	}
	if o.FirstStepCases > 0 {
		if err := firstStepRow(o, md); err != nil {
			return err
		}
	}
	if o.TrainerSteps > 0 {
		return trainerRow(o, md)
	}
	return nil
}

// streamShape is the memory-bound row's volume: 8 bytes a voxel decoded (float32 image,
// int32 pseudo-labels), 64 MiB a volume with its labels.
var streamShape = [3]int{256, 256, 128}

// memRun is one way of the memory-bound row to read its data.
type memRun struct {
	label      string
	vols       int
	data       string
	env        []string
	peak, rate []float64 // per round: peak RSS (MiB), steady samples/s
	first      []float64 // per round: seconds to the first step
}

// memoryBoundRow trains the cpu-small network (MemoryConfig) at 96² batch 4 for StreamSteps
// steps on StreamCases phantom volumes three ways — in memory, within a data.max_resident_gb
// budget of about 4 volumes, from a cache prepared beforehand — and in memory on 1 and 16 of
// them (the model's own footprint, and RSS growing with the volumes), in StreamRounds rounds.
func memoryBoundRow(o RunOptions, md *strings.Builder) error {
	dir := filepath.Join(o.Work, "stream")
	n := max(o.StreamCases, 2)
	ds := filepath.Join(dir, fmt.Sprintf("phantoms-%d", n))
	if err := ensurePhantoms(o, ds, n, streamShape); err != nil {
		return err
	}
	env := trainEnv(o, 96, 112, 4)
	volBytes := float64(streamShape[0] * streamShape[1] * streamShape[2] * 8)
	volMiB := volBytes / (1 << 20)
	budgetGB := 4.25 * volBytes / 1e9 // data.max_resident_gb counts GB of 1e9 bytes
	cacheDir := filepath.Join(dir, fmt.Sprintf("cache-%d", n))
	o.Log("stream: preparing the cache of %d volumes", n)
	prep, err := prepareCache(o, o.MemoryConfig, ds, cacheDir, env)
	if err != nil {
		return err
	}
	var runs []*memRun
	for _, k := range []int{1, 16} {
		if k < n {
			m, err := subsetManifest(ds, k)
			if err != nil {
				return err
			}
			runs = append(runs, &memRun{label: "in memory", vols: k, data: m})
		}
	}
	runs = append(runs, &memRun{label: "in memory", vols: n, data: ds},
		&memRun{label: fmt.Sprintf("`data.max_resident_gb: %.3g` (≈4 volumes)", budgetGB), vols: n, data: ds,
			env: []string{fmt.Sprint("SLI2VOL_DATA_MAX_RESIDENT_GB=", budgetGB)}},
		&memRun{label: fmt.Sprintf("`data.max_resident_gb: %.3g` + `data.volume_group: 3`", budgetGB), vols: n, data: ds,
			env: []string{fmt.Sprint("SLI2VOL_DATA_MAX_RESIDENT_GB=", budgetGB), "SLI2VOL_DATA_VOLUME_GROUP=3"}},
		&memRun{label: "cache (`data.cache`)", vols: n, data: ds, env: []string{"SLI2VOL_DATA_CACHE=" + cacheDir}})
	warm := min(5, o.StreamSteps/4)
	for round := 0; round < max(o.StreamRounds, 1); round++ {
		for _, r := range runs {
			c, err := runTrainChild(o.Sli2vol, trainChild{data: r.data, pseudo: ds, out: filepath.Join(dir, "run"),
				config: o.MemoryConfig, env: append(append([]string(nil), env...), r.env...), steps: o.StreamSteps})
			if err != nil {
				return err
			}
			med, _ := steady(c.rates, warm)
			r.peak, r.rate, r.first = append(r.peak, c.peakRSSMiB), append(r.rate, med), append(r.first, c.firstStep.Seconds())
			o.Log("stream: %s, %d volumes: peak RSS %.0f MiB, %.3g samples/s, first step after %.1f s (%s)",
				r.label, r.vols, c.peakRSSMiB, med, c.firstStep.Seconds(), loadAvg())
		}
	}
	memoryBoundReport(o, md, runs, prep, volMiB, budgetGB*1e9/(1<<20), warm)
	return nil
}

// memoryBoundReport writes the memory-bound row's table and its three checks (reported
// whatever they find: they describe the data paths, they do not gate the bench).
func memoryBoundReport(o RunOptions, md *strings.Builder, runs []*memRun, prep time.Duration, volMiB, budgetMiB float64, warm int) {
	n := runs[len(runs)-1].vols
	fmt.Fprintf(md, "\nTraining on more data than memory (#18): `sli2vol train` (mode sli2vol+, phantom labels as pseudo-labels) on %d phantom "+
		"volumes of %d×%d×%d (%.0f MiB each decoded, with labels), %s network, 96² crops (resize 96–112), batch 4, %d threads, "+
		"%d steps per run (samples/s: median of the per-step `samples_per_s` after %d warm-up steps), %d round(s), medians; "+
		"peak RSS is the child's VmHWM; first step: from its start to its first metrics line. The cache was prepared "+
		"beforehand in %.1f s (`sli2vol prepare`).\n\n"+
		"| data | volumes | peak RSS (MiB) | samples/s | vs in memory (%d) | first step (s) |\n|---|---|---|---|---|---|\n",
		n, streamShape[0], streamShape[1], streamShape[2], volMiB, filepath.Base(o.MemoryConfig), o.Threads,
		o.StreamSteps, warm, max(o.StreamRounds, 1), prep.Seconds(), n)
	byKey := map[string]*memRun{}
	var inMem *memRun
	for _, r := range runs {
		byKey[fmt.Sprint(r.label, r.vols)] = r
		if r.label == "in memory" && r.vols == n {
			inMem = r
		}
	}
	for _, r := range runs {
		fmt.Fprintf(md, "| %s | %d | %.0f | %.3g | %.2f | %.1f |\n", r.label, r.vols, summarize(r.peak).med,
			summarize(r.rate).med, summarize(r.rate).med/summarize(inMem.rate).med, summarize(r.first).med)
	}
	foot := byKey["in memory1"]
	if foot == nil {
		return
	}
	F := summarize(foot.peak).med
	bound := budgetMiB + F
	md.WriteString("\n")
	for _, r := range runs[len(runs)-3:] {
		p := summarize(r.peak).med
		fmt.Fprintf(md, "- Bound, %s: peak RSS %.0f MiB against the budget %.0f MiB + the footprint %.0f MiB (1 volume in memory) = %.0f MiB: **%s**.\n",
			r.label, p, budgetMiB, F, bound, yesNo(p < bound, "met", "not met"))
	}
	if mid := byKey["in memory16"]; mid != nil {
		per := (summarize(inMem.peak).med - summarize(mid.peak).med) / float64(n-16)
		fmt.Fprintf(md, "- Growth in memory: %.0f → %.0f → %.0f MiB for 1, 16 and %d volumes: %.1f MiB per added volume (%.0f MiB decoded each).\n",
			F, summarize(mid.peak).med, summarize(inMem.peak).med, n, per, volMiB)
	}
	for _, r := range runs[len(runs)-3:] {
		q := summarize(r.rate).med / summarize(inMem.rate).med
		fmt.Fprintf(md, "- Speed, %s: %.2f × in memory (target 0.95): **%s**.\n", r.label, q, yesNo(q >= 0.95, "met", "not met"))
	}
	md.WriteString("- Why the resident budget alone falls short: the paper's pairs come in a random order over every volume, so with " +
		"a budget of ~4 of them nearly every pair's volume is not resident and is decoded again (a whole .nii.gz for two slices). " +
		"`data.volume_group: 3` shuffles the volumes and then the pairs within groups of 3, so each volume is decoded once per " +
		"epoch (batches then mix 3 volumes, not all; it changes the samples, so it is opt-in). The cache reads " +
		"the 2 slices (and their 2 label slices) of each pair from its .npy files (the page cache, here) instead of memory.\n")
}

func yesNo(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

// loadAvg is the 1-minute load average, logged beside each run: on a shared machine, other
// work on the cores moves these figures.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load unknown"
	}
	return "load " + strings.Fields(string(b))[0]
}

// firstStepShape is the time-to-first-step row's small volume.
var firstStepShape = [3]int{64, 64, 32}

// firstStepRow times `sli2vol train` from its start to its first metrics line on
// FirstStepCases small phantom cases: within data.max_resident_gb (headers only at the
// start), from a cache prepared beforehand, and in memory (every case decoded first).
func firstStepRow(o RunOptions, md *strings.Builder) error {
	dir := filepath.Join(o.Work, "stream")
	n := o.FirstStepCases
	ds := filepath.Join(dir, fmt.Sprintf("small-%d", n))
	if err := ensurePhantoms(o, ds, n, firstStepShape); err != nil {
		return err
	}
	env := trainEnv(o, 64, 72, 4)
	cacheDir := filepath.Join(dir, fmt.Sprintf("cache-small-%d", n))
	o.Log("stream: preparing the cache of %d small cases", n)
	prep, err := prepareCache(o, o.MemoryConfig, ds, cacheDir, env)
	if err != nil {
		return err
	}
	ways := []struct {
		label string
		env   []string
		timed bool // held to the 10 s target
	}{
		{"`data.max_resident_gb: 0.25` (headers only at the start)", []string{"SLI2VOL_DATA_MAX_RESIDENT_GB=0.25"}, true},
		{"cache (`data.cache`), prepared beforehand", []string{"SLI2VOL_DATA_CACHE=" + cacheDir}, true},
		{"in memory (every case decoded first)", nil, false},
	}
	times := make([][]float64, len(ways))
	for round := 0; round < max(o.StreamRounds, 1); round++ {
		for i, w := range ways {
			c, err := runTrainChild(o.Sli2vol, trainChild{data: ds, pseudo: ds, out: filepath.Join(dir, "run"),
				config: o.MemoryConfig, env: append(append([]string(nil), env...), w.env...), steps: 1})
			if err != nil {
				return err
			}
			times[i] = append(times[i], c.firstStep.Seconds())
			o.Log("stream: first step, %s: %.2f s (%s)", w.label, c.firstStep.Seconds(), loadAvg())
		}
	}
	fmt.Fprintf(md, "\nTime to the first step with %d phantom cases of %d×%d×%d on disk (`sli2vol train`, %s network, 64² batch 4, "+
		"from the process's start to its first metrics.jsonl line; the files are in the page cache; the cache was prepared "+
		"beforehand in %.1f s):\n\n| data | first step (s) | target < 10 s |\n|---|---|---|\n",
		n, firstStepShape[0], firstStepShape[1], firstStepShape[2], filepath.Base(o.MemoryConfig), prep.Seconds())
	for i, w := range ways {
		t := summarize(times[i]).med
		verdict := "(comparison)"
		if w.timed {
			verdict = "**" + yesNo(t < 10, "met", "not met") + "**"
		}
		fmt.Fprintf(md, "| %s | %.2f | %s |\n", w.label, t, verdict)
	}
	return nil
}

// trainerRow times the whole `sli2vol train` (sampling, batches prepared ahead by
// data.workers, upload, step, logging) in steady state beside the train-96 row's Go stepper:
// the same network (TrainerConfig), 96² crops of 96² phantom slices (no resize, as the
// stepper's batch), batch 4, threads.
func trainerRow(o RunOptions, md *strings.Builder) error {
	dir := filepath.Join(o.Work, "stream")
	ds := filepath.Join(dir, "trainer-4")
	if err := ensurePhantoms(o, ds, 4, [3]int{96, 96, 48}); err != nil {
		return err
	}
	st := filepath.Join(dir, "stepper")
	if _, err := runJSONOrNil(o.Self, "prepare", st, o.TrainerConfig, "96", "4", "0"); err != nil {
		return err
	}
	env := trainEnv(o, 96, 96, 4)
	warm := min(4, o.TrainerSteps/4)
	var med, thr, step []float64
	var early []float64 // the first round's warm-up steps
	for round := 0; round < max(o.StreamRounds, 1); round++ {
		c, err := runTrainChild(o.Sli2vol, trainChild{data: ds, pseudo: ds, out: filepath.Join(dir, "run"),
			config: o.TrainerConfig, env: env, steps: o.TrainerSteps})
		if err != nil {
			return err
		}
		m, t := steady(c.rates, warm)
		s, err := runJSON(o.Self, "train", st, o.Device, fmt.Sprint(max(1, o.TrainerSteps-warm)), fmt.Sprint(o.Threads))
		if err != nil {
			return err
		}
		if round == 0 {
			early = c.rates[:min(warm, len(c.rates))]
		}
		med, thr, step = append(med, m), append(thr, t), append(step, s.SamplesPerS)
		o.Log("stream: trainer %.3g (throughput %.3g) samples/s, stepper %.3g (%s)", m, t, s.SamplesPerS, loadAvg())
	}
	M, T, S := summarize(med), summarize(thr), summarize(step)
	fmt.Fprintf(md, "\nThe trainer against its stepper: `sli2vol train` (%s network, 96² crops of 4 phantom volumes of 96×96×48, "+
		"batch 4, %d threads, %d steps, the first %d not counted; their per-step samples/s in round 1: %s) beside the stepper "+
		"of the train-96 row (`train.Stepper` on one prepared batch, %d steps after an untimed one), %d round(s):\n\n"+
		"| | samples/s | trainer/stepper |\n|---|---|---|\n"+
		"| stepper (`sli2vol-bench train`) | %s | 1 |\n"+
		"| trainer, median of the per-step `samples_per_s` | %s | **%.2f** |\n"+
		"| trainer, throughput over the same steps | %s | %.2f |\n",
		filepath.Base(o.TrainerConfig), o.Threads, o.TrainerSteps, warm, fmtRates(early), max(1, o.TrainerSteps-warm),
		max(o.StreamRounds, 1), S, M, M.med/S.med, T, T.med/S.med)
	return nil
}

func fmtRates(r []float64) string {
	s := make([]string, len(r))
	for i, x := range r {
		s[i] = fmt.Sprintf("%.3g", x)
	}
	return strings.Join(s, ", ")
}

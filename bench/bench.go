package bench

import (
	"encoding/json"
	"fmt"
	"github.com/sli2vol/sli2vol/dist"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
	"github.com/sli2vol/sli2vol/train"
)

// Spec is one benchmark setting, shared with the PyTorch side through spec.json.
type Spec struct {
	Model     configs.Model  `json:"-"`
	ModelJSON map[string]any `json:"model"`
	HW        int            `json:"hw"`
	Batch     int            `json:"batch"`
	Slices    int            `json:"slices"`
	Scale     float64        `json:"intensity_scale"`
	Window    [2]float64     `json:"window"`
	Seed      int64          `json:"seed"`
}

// Result is what one side reports.
type Result struct {
	FirstLoss    float64 `json:"first_loss"`
	SamplesPerS  float64 `json:"samples_per_s,omitempty"`
	SlicesPerS   float64 `json:"slices_per_s,omitempty"`
	Labelled     int64   `json:"labelled,omitempty"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	Steps        int     `json:"steps,omitempty"`
	RSSAtStep100 float64 `json:"rss_step100_mib,omitempty"`
	RSSAtEnd     float64 `json:"rss_end_mib,omitempty"`
	// Ops: ATen operators dispatched by one more (untimed) step, by name, when OpsEnv is set.
	Ops map[string]int64 `json:"ops,omitempty"`
	// With OpsEnv=time, ProfiledSteps more steps run under torchx.ProfileOps: their wall time
	// per step, and per operator name the dispatches and host time (µs) per step.
	ProfiledSteps  int               `json:"profiled_steps,omitempty"`
	ProfiledStepMs float64           `json:"profiled_step_ms,omitempty"`
	OpsTime        map[string]OpTime `json:"ops_time,omitempty"`
	// Data-parallel runs: the step's time with DDP, without communication (the same step,
	// no Reducer), and of all-reducing the gradients alone (one flat buffer), each the median
	// over the steps, in ms; the share of that all-reduce hidden behind the backward pass is
	// (local + all-reduce − DDP) / all-reduce.
	StepDDPMs       float64 `json:"step_ddp_ms,omitempty"`
	StepLocalMs     float64 `json:"step_local_ms,omitempty"`
	AllReduceMs     float64 `json:"allreduce_ms,omitempty"`
	OverlapFraction float64 `json:"overlap,omitempty"`
}

// OpTime is one operator's share of a profiled step: dispatches, and host time of its
// outermost events on the stepping thread and on others (autograd's device threads).
type OpTime struct {
	Count    float64 `json:"count"`
	CallerUs float64 `json:"caller_us"`
	OtherUs  float64 `json:"other_us"`
}

func modelJSON(m configs.Model) map[string]any {
	return map[string]any{"mode": m.Mode, "radius": m.Radius, "width": m.Width, "stages": m.Stages,
		"blocks_per_stage": m.BlocksPerStage, "feature_dim": m.FeatureDim, "edge_radius": m.EdgeRadius,
		"separate_pl_encoder": m.SeparatePLEncoder,
		"geig":                map[string]any{"directions": m.GEIG.Directions, "scales": m.GEIG.Scales}}
}

// Prepare writes dir/spec.json, dir/weights.pt (seeded initial weights), dir/batch.pt (a
// training batch of phantom slice pairs and PL masks, in [0,1]) and dir/volume.nii.gz +
// dir/labels.nii.gz (a phantom of spec.Slices slices for propagation), and the same volume
// as volume.npy + labels.npy for the PyTorch side.
func Prepare(dir string, c *configs.Config, hw, batch, slices int) (*Spec, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Spec{Model: c.Model, ModelJSON: modelJSON(c.Model), HW: hw, Batch: batch, Slices: slices,
		Scale: c.Data.IntensityScale, Window: c.Data.CTWindow, Seed: c.Seed}
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), b, 0o644); err != nil {
		return nil, err
	}
	torchx.ManualSeed(uint64(c.Seed))
	m, err := runs.NewCFN(c.Model)
	if err != nil {
		return nil, err
	}
	if err := torchx.SaveStateDict(filepath.Join(dir, "weights.pt"), models.StateDict(m)); err != nil {
		return nil, err
	}
	// Training batch: neighbouring phantom slices (window applied), their labels as PLs.
	img, lab, g := data.Phantom([3]int{hw, hw, max(batch+2, 12)}, c.Seed)
	sl, _ := data.NewSlicer(&g, -1)
	win := data.Window{Lo: float32(c.Data.CTWindow[0]), Up: float32(c.Data.CTWindow[1])}
	var bt data.Batch
	bt.Size, bt.Crop = batch, hw
	r := rand.New(rand.NewSource(c.Seed))
	for i := 0; i < batch; i++ {
		j := 1 + r.Intn(sl.Len()-2)
		for _, n := range []int{j, j + 1} {
			v := data.Slice(sl, img, n)
			win.Apply(v, v)
			l := data.Slice(sl, lab, n)
			pl := make([]float32, len(l))
			for k, x := range l {
				if x != 0 {
					pl[k] = 1
				}
			}
			if n == j {
				bt.A, bt.PLA = append(bt.A, v...), append(bt.PLA, pl...)
			} else {
				bt.B, bt.PLB = append(bt.B, v...), append(bt.PLB, pl...)
			}
		}
	}
	sh := []int64{int64(batch), 1, int64(hw), int64(hw)}
	bts := map[string]torchx.Tensor{
		"s_j": torchx.FromFloat32(bt.A, sh...), "s_j1": torchx.FromFloat32(bt.B, sh...),
		"pl_j": torchx.FromFloat32(bt.PLA, sh...), "pl_j1": torchx.FromFloat32(bt.PLB, sh...),
	}
	if err := torchx.SaveStateDict(filepath.Join(dir, "batch.pt"), bts); err != nil {
		return nil, err
	}
	if err := writeCpp(dir, c, m, bts); err != nil {
		return nil, err
	}
	if slices <= 0 { // a training row: no volume to propagate through
		return s, nil
	}
	vi, vl, vg := data.Phantom([3]int{hw, hw, slices}, c.Seed+1)
	if err := data.WriteImageInt16(filepath.Join(dir, "volume.nii.gz"), vi, &vg, data.WriteOptions{Overwrite: true}); err != nil {
		return nil, err
	}
	if err := data.WriteLabels(filepath.Join(dir, "labels.nii.gz"), vl, &vg, data.WriteOptions{Overwrite: true}); err != nil {
		return nil, err
	}
	// The same voxels as .npy for the PyTorch side (the image as stored, int16-rounded).
	stored, err := data.LoadImage(filepath.Join(dir, "volume.nii.gz"), data.DefaultLimits)
	if err != nil {
		return nil, err
	}
	if err := writeNPY(filepath.Join(dir, "volume.npy"), vg.Shape, stored.Data); err != nil {
		return nil, err
	}
	return s, writeNPY(filepath.Join(dir, "labels.npy"), vg.Shape, vl)
}

func loadSpec(dir string) (*Spec, *configs.Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, "spec.json"))
	if err != nil {
		return nil, nil, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, err
	}
	c := configs.Defaults()
	m := &c.Model
	m.Mode, m.Radius, m.Width, m.Stages = configs.Mode(s.ModelJSON["mode"].(string)), num(s.ModelJSON["radius"]), num(s.ModelJSON["width"]), num(s.ModelJSON["stages"])
	m.BlocksPerStage, m.FeatureDim, m.EdgeRadius = num(s.ModelJSON["blocks_per_stage"]), num(s.ModelJSON["feature_dim"]), num(s.ModelJSON["edge_radius"])
	m.SeparatePLEncoder = s.ModelJSON["separate_pl_encoder"].(bool)
	geig := s.ModelJSON["geig"].(map[string]any)
	m.GEIG.Directions = num(geig["directions"])
	m.GEIG.Scales = nil
	for _, x := range geig["scales"].([]any) {
		m.GEIG.Scales = append(m.GEIG.Scales, num(x))
	}
	c.Data.IntensityScale, c.Data.CTWindow, c.Seed = s.Scale, s.Window, s.Seed
	c.Data.Intensity = "ct"
	return &s, c, nil
}

func num(v any) int { return int(v.(float64)) }

// loadModel builds the prepared spec's model with its saved initial weights on device.
func loadModel(dir, device string) (*configs.Config, *models.CFN, error) {
	_, c, err := loadSpec(dir)
	if err != nil {
		return nil, nil, err
	}
	m, err := runs.NewCFN(c.Model)
	if err != nil {
		return nil, nil, err
	}
	sd, err := torchx.LoadStateDict(filepath.Join(dir, "weights.pt"))
	if err != nil {
		return nil, nil, err
	}
	if err := models.LoadStateDict(m, sd); err != nil {
		return nil, nil, err
	}
	models.To(m, device)
	return c, m, nil
}

// rssSamples reads the memory held during a long run. RSS moves by a few per cent from step
// to step (the allocator keeps or returns freed pages), so each end of the run is the median
// over 20 steps: 91–110 and the last 20.
type rssSamples struct {
	steps       int
	early, late []float64
}

// after reads RSS after step i where the run's ends are sampled.
func (s *rssSamples) after(i int, res *Result) {
	early, late := i+1 > 90 && i+1 <= 110, s.steps >= 200 && i >= s.steps-20
	if early || late {
		// Readings of the memory held: Go's collector runs first, so that the garbage it lets
		// accumulate between its own cycles (a sawtooth of a few MiB, bounded by GOGC) neither
		// hides nor fakes a trend. torchx.GC skips collections where no tensor is left to it,
		// which is every step here.
		runtime.GC()
	}
	if i+1 == 100 {
		res.RSSAtStep100 = rssMiB("VmRSS") // short runs (the harness test) keep this one reading
	}
	if early {
		s.early = append(s.early, rssMiB("VmRSS"))
	}
	if late {
		s.late = append(s.late, rssMiB("VmRSS"))
	}
}

// finish sets the run's ends and peak.
func (s *rssSamples) finish(res *Result) {
	res.RSSAtEnd = rssMiB("VmRSS")
	if len(s.early) == 20 && len(s.late) == 20 {
		res.RSSAtStep100, res.RSSAtEnd = summarize(s.early).med, summarize(s.late).med
	}
	res.PeakRSSMiB = rssMiB("VmHWM")
}

// loadBatch reads the prepared training batch (dir/batch.pt).
func loadBatch(dir string) (data.Batch, error) {
	sd, err := torchx.LoadStateDict(filepath.Join(dir, "batch.pt"))
	if err != nil {
		return data.Batch{}, err
	}
	sh := sd["s_j"].Shape()
	return data.Batch{Size: int(sh[0]), Crop: int(sh[2]), A: torchx.Float32s(sd["s_j"]), B: torchx.Float32s(sd["s_j1"]),
		PLA: torchx.Float32s(sd["pl_j"]), PLB: torchx.Float32s(sd["pl_j1"])}, nil
}

// joinDataParallel makes st a data-parallel step when this process was launched as one of
// several (dist.Launch, torchrun): the world size, and what to call when done.
func joinDataParallel(st *train.Stepper) (int, *dist.Group, func(), error) {
	e, ok, err := dist.FromEnviron(os.Getenv)
	if err != nil || !ok {
		return 1, nil, func() {}, err
	}
	g, err := dist.Init(e, dist.Gloo, time.Minute)
	if err != nil {
		return 0, nil, nil, err
	}
	ddp, err := dist.NewDDP(g, models.Parameters(st.Model), models.Buffers(st.Model), dist.DefaultBucketCapMB)
	if err != nil {
		g.Close()
		return 0, nil, nil, err
	}
	st.Sync = ddp
	return g.Size(), g, func() { ddp.Close(); g.Close() }, nil
}

// measureOverlap times n steps of st three ways on every rank (with DDP; without the
// Reducer; and all-reducing a buffer the size of every gradient alone) and sets the
// medians and the overlap on res: how much of the gradient communication DDP hides behind
// the backward pass.
func measureOverlap(st *train.Stepper, g *dist.Group, b data.Batch, n int, res *Result) error {
	sync := st.Sync
	time1 := func(f func() error) ([]float64, error) {
		var ms []float64
		for i := 0; i < n; i++ {
			if err := g.Barrier(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			if err := f(); err != nil {
				return nil, err
			}
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
			torchx.GC()
		}
		return ms, nil
	}
	step := func() error { _, err := st.Step(b); return err }
	ddp, err := time1(step)
	if err != nil {
		return err
	}
	st.Sync = nil
	local, err := time1(step)
	st.Sync = sync
	if err != nil {
		return err
	}
	var numel int64
	for _, p := range models.Parameters(st.Model) {
		numel += torchx.Numel(p)
	}
	flat := torchx.Zeros([]int64{numel}, torchx.Float32, "cpu")
	ar, err := time1(func() error { return g.AllReduceSum(flat) })
	if err != nil {
		return err
	}
	res.StepDDPMs, res.StepLocalMs, res.AllReduceMs = summarize(ddp).med, summarize(local).med, summarize(ar).med
	res.OverlapFraction = math.Max(0, math.Min(1, (res.StepLocalMs+res.AllReduceMs-res.StepDDPMs)/res.AllReduceMs))
	return nil
}

// TrainSteps times steps optimizer steps of the trainer's Stepper on the prepared batch,
// after one untimed step whose loss (the same weights and batch as PyTorch's) is FirstLoss;
// steps −1 times that first step alone.
func TrainSteps(dir, device string, steps int) (*Result, error) {
	c, m, err := loadModel(dir, device)
	if err != nil {
		return nil, err
	}
	models.SetTraining(m, true)
	b, err := loadBatch(dir)
	if err != nil {
		return nil, err
	}
	opt, _ := train.NewOptimizer(c.Train, models.Parameters(m), 1)
	defer opt.Close()
	st := &train.Stepper{Cfg: c, Model: m, Opt: opt, Device: device}
	// Under a distributed launch (the data-parallel row), every rank steps its batch with
	// DDP's gradient averaging; samples per second count every rank's.
	world, g, leave, err := joinDataParallel(st)
	if err != nil {
		return nil, err
	}
	defer leave()
	// On one OS thread, as train.CFN runs its loop: unpinned, steps could move between OS
	// threads, and libtorch's OpenMP thread teams belong to the thread that starts them.
	defer torchx.PinThread()()
	res := &Result{Steps: steps}
	t0 := time.Now()
	if res.FirstLoss, err = st.Step(b); err != nil {
		return nil, err
	}
	if steps < 0 { // the first step is the timed one
		res.Steps = 1
		res.SamplesPerS = float64(b.Size) / time.Since(t0).Seconds()
		res.PeakRSSMiB = rssMiB("VmHWM")
		return res, nil
	}
	rss := rssSamples{steps: steps}
	stopProfile, err := startCPUProfile()
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	for i := 0; i < steps; i++ {
		if _, err := st.Step(b); err != nil {
			return nil, err
		}
		torchx.GC()
		rss.after(i, res)
	}
	if steps > 0 {
		res.SamplesPerS = float64(steps*b.Size*world) / time.Since(t0).Seconds()
	}
	if g != nil {
		if err := measureOverlap(st, g, b, max(5, steps/4), res); err != nil {
			return nil, err
		}
	}
	stopProfile()
	rss.finish(res)
	return res, countStepOps(res, func() error { _, err := st.Step(b); return err })
}

// CPUProfileEnv names a file for a Go CPU profile of the timed training steps (pprof): on a
// GPU it shows where the host thread spends a step, waiting for the device included (time in
// a cgo call is charged to the Go function that made it).
const CPUProfileEnv = "SLI2VOL_BENCH_CPUPROFILE"

func startCPUProfile() (stop func(), err error) {
	path := os.Getenv(CPUProfileEnv)
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CPUProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", CPUProfileEnv, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// OpsEnv set (to anything) makes the training commands count the operators of one more step
// and the propagation command those of one more propagation (Result.Ops); bench.py does the
// same with the PyTorch profiler. Set to "time", the training commands (Go's and cfn_step)
// also profile profiledSteps more steps (Result.OpsTime): bench/hosttime.py sets two sides'
// profiles beside each other.
const OpsEnv = "SLI2VOL_BENCH_OPS"

const profiledSteps = 10

func countStepOps(res *Result, step func() error) error {
	if os.Getenv(OpsEnv) == "" {
		return nil
	}
	run := func() {
		if e := step(); e != nil {
			panic(&torchx.Error{Msg: e.Error()})
		}
	}
	var err error
	if res.Ops, err = torchx.CountOps(run); err != nil || os.Getenv(OpsEnv) != "time" {
		return err
	}
	t0 := time.Now()
	stats, err := torchx.ProfileOps(func() {
		for i := 0; i < profiledSteps; i++ {
			run()
		}
	})
	if err != nil {
		return err
	}
	res.ProfiledSteps = profiledSteps
	res.ProfiledStepMs = time.Since(t0).Seconds() * 1e3 / profiledSteps
	res.OpsTime = map[string]OpTime{}
	for name, st := range stats {
		res.OpsTime[name] = OpTime{Count: float64(st.Count) / profiledSteps,
			CallerUs: st.Caller.Seconds() * 1e6 / profiledSteps, OtherUs: st.Other.Seconds() * 1e6 / profiledSteps}
	}
	return nil
}

// Propagate times infer's propagation through the prepared volume from its middle slice
// (every structure on it, both directions), as `sli2vol segment` runs it; perSlice: on the
// per-slice reference path (the propagation before chunked encoding).
func Propagate(dir, device string, perSlice bool) (*Result, error) {
	c, m, err := loadModel(dir, device)
	if err != nil {
		return nil, err
	}
	img, err := data.LoadImage(filepath.Join(dir, "volume.nii.gz"), data.DefaultLimits)
	if err != nil {
		return nil, err
	}
	lab, err := data.LoadLabels(filepath.Join(dir, "labels.nii.gz"), data.DefaultLimits)
	if err != nil {
		return nil, err
	}
	j := &infer.Job{Cfg: c, Net: m, Device: device}
	p, err := j.Prepare(img)
	if err != nil {
		return nil, err
	}
	ann, err := data.FindAnnotation(lab, p.Slicer, p.Slicer.Len()/2)
	if err != nil {
		return nil, err
	}
	prop := j.Propagator()
	prop.PerSlice = perSlice
	segment := func() (*infer.Result, error) { return prop.Segment(p.Image, p.Slicer, p.Window, ann) }
	t0 := time.Now()
	r, err := segment()
	if err != nil {
		return nil, err
	}
	dt := time.Since(t0).Seconds()
	res := &Result{SlicesPerS: float64(r.Last-r.First) / dt, PeakRSSMiB: rssMiB("VmHWM")}
	for _, v := range r.Labels {
		if v != 0 {
			res.Labelled++
		}
	}
	// One more propagation counted (and with "time" profiledSteps more, profiled).
	err = countStepOps(res, func() error { _, e := segment(); return e })
	return res, err
}

func rssMiB(field string) float64 { return statusMiB("/proc/self/status", field) }

// statusMiB reads a kB field of a /proc status file in MiB (0 when unreadable).
func statusMiB(path, field string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// Print writes r as one JSON line.
func Print(r *Result) { b, _ := json.Marshal(r); fmt.Println(string(b)) }

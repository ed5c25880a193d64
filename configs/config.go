package configs

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	yaml "go.yaml.in/yaml/v3"
)

//go:embed defaults.yaml
var defaultsYAML []byte

// Config is the whole configuration. Field tags name the YAML keys.
type Config struct {
	Seed    int64  `mapstructure:"seed" yaml:"seed"`
	Device  string `mapstructure:"device" yaml:"device"`
	Threads int    `mapstructure:"threads" yaml:"threads"`
	Data    Data   `mapstructure:"data" yaml:"data"`
	Model   Model  `mapstructure:"model" yaml:"model"`
	Train   Train  `mapstructure:"train" yaml:"train"`
	Infer   Infer  `mapstructure:"infer" yaml:"infer"`
	UNETR   UNETR  `mapstructure:"unetr" yaml:"unetr"`
	Dist    Dist   `mapstructure:"dist" yaml:"dist"`
	Limits  Limits `mapstructure:"limits" yaml:"limits"`
}

// Dist configures data-parallel training (several processes: torchrun, srun, --nproc).
type Dist struct {
	Backend       DistBackend `mapstructure:"backend" yaml:"backend"`
	TimeoutS      int         `mapstructure:"timeout_s" yaml:"timeout_s"`
	BucketCapMB   int         `mapstructure:"bucket_cap_mb" yaml:"bucket_cap_mb"`
	DropLast      bool        `mapstructure:"drop_last" yaml:"drop_last"`
	SyncBatchNorm bool        `mapstructure:"sync_batchnorm" yaml:"sync_batchnorm"`
}

// Data configures volume reading, intensities and training-pair sampling.
type Data struct {
	SliceAxis         string     `mapstructure:"slice_axis" yaml:"slice_axis"`
	Intensity         string     `mapstructure:"intensity" yaml:"intensity"`
	CTWindow          [2]float64 `mapstructure:"ct_window" yaml:"ct_window,flow"`
	CTWindowJitterLow [2]float64 `mapstructure:"ct_window_jitter_low" yaml:"ct_window_jitter_low,flow"`
	CTWindowJitterUp  [2]float64 `mapstructure:"ct_window_jitter_up" yaml:"ct_window_jitter_up,flow"`
	MRIPercentiles    [2]float64 `mapstructure:"mri_percentiles" yaml:"mri_percentiles,flow"`
	IntensityScale    float64    `mapstructure:"intensity_scale" yaml:"intensity_scale"`
	PairStrides       []int      `mapstructure:"pair_strides" yaml:"pair_strides,flow"`
	SwapProb          float64    `mapstructure:"swap_prob" yaml:"swap_prob"`
	ResizeRange       [2]int     `mapstructure:"resize_range" yaml:"resize_range,flow"`
	Crop              int        `mapstructure:"crop" yaml:"crop"`
	// Datasets larger than memory: a preprocessed, memory-mapped cache (prepared on first
	// use), or a bounded set of resident decoded volumes; workers prepare batches ahead.
	Cache         string  `mapstructure:"cache" yaml:"cache"`
	MaxResidentGB float64 `mapstructure:"max_resident_gb" yaml:"max_resident_gb"`
	VolumeGroup   int     `mapstructure:"volume_group" yaml:"volume_group"`
	Workers       int     `mapstructure:"workers" yaml:"workers"`
	Prefetch      int     `mapstructure:"prefetch" yaml:"prefetch"`
}

// GEIG configures the gradient-enhanced image generator (§3.3).
type GEIG struct {
	Directions int   `mapstructure:"directions" yaml:"directions"`
	Scales     []int `mapstructure:"scales" yaml:"scales,flow"`
}

// Model configures the correspondence-flow networks.
type Model struct {
	Mode              Mode `mapstructure:"mode" yaml:"mode"`
	Width             int  `mapstructure:"width" yaml:"width"`
	Stages            int  `mapstructure:"stages" yaml:"stages"`
	BlocksPerStage    int  `mapstructure:"blocks_per_stage" yaml:"blocks_per_stage"`
	FeatureDim        int  `mapstructure:"feature_dim" yaml:"feature_dim"`
	Radius            int  `mapstructure:"radius" yaml:"radius"`
	EdgeRadius        int  `mapstructure:"edge_radius" yaml:"edge_radius"`
	GEIG              GEIG `mapstructure:"geig" yaml:"geig"`
	SeparatePLEncoder bool `mapstructure:"separate_pl_encoder" yaml:"separate_pl_encoder"`
}

// Train configures the correspondence-flow trainer.
type Train struct {
	Optimizer       Optimizer `mapstructure:"optimizer" yaml:"optimizer"`
	LR              float64   `mapstructure:"lr" yaml:"lr"`
	WeightDecay     float64   `mapstructure:"weight_decay" yaml:"weight_decay"`
	Momentum        float64   `mapstructure:"momentum" yaml:"momentum"`
	Nesterov        bool      `mapstructure:"nesterov" yaml:"nesterov"`
	Schedule        Schedule  `mapstructure:"schedule" yaml:"schedule"`
	StepSize        int       `mapstructure:"step_size" yaml:"step_size"`
	Gamma           float64   `mapstructure:"gamma" yaml:"gamma"`
	PolyPower       float64   `mapstructure:"poly_power" yaml:"poly_power"`
	Epochs          int       `mapstructure:"epochs" yaml:"epochs"`
	BatchSize       int       `mapstructure:"batch_size" yaml:"batch_size"`
	Loss            Loss      `mapstructure:"loss" yaml:"loss"`
	CheckpointEvery int       `mapstructure:"checkpoint_every" yaml:"checkpoint_every"`
	AMP             AMP       `mapstructure:"amp" yaml:"amp"`
	ChannelsLast    bool      `mapstructure:"channels_last" yaml:"channels_last"`
	CUDNNBenchmark  bool      `mapstructure:"cudnn_benchmark" yaml:"cudnn_benchmark"`
}

// Infer configures mask propagation.
type Infer struct {
	ObjectEstimate Estimate  `mapstructure:"object_estimate" yaml:"object_estimate"`
	MinArea        int       `mapstructure:"min_area" yaml:"min_area"`
	Resize         int       `mapstructure:"resize" yaml:"resize"`
	Spacing        Spacing   `mapstructure:"spacing" yaml:"spacing"`
	Verification   bool      `mapstructure:"verification" yaml:"verification"`
	EncodeBatch    int       `mapstructure:"encode_batch" yaml:"encode_batch"`
	AdaptSteps     int       `mapstructure:"adapt_steps" yaml:"adapt_steps"`
	AdaptLR        float64   `mapstructure:"adapt_lr" yaml:"adapt_lr"`
	AdaptRounds    int       `mapstructure:"adapt_rounds" yaml:"adapt_rounds"`
	AdaptNorm      AdaptNorm `mapstructure:"adapt_norm" yaml:"adapt_norm"`
	AdaptMix       float64   `mapstructure:"adapt_mix" yaml:"adapt_mix"`
}

// UNETR configures UNETR++ (pseudo-label refinement and the FS-SS baseline).
type UNETR struct {
	PatchSize          [3]int    `mapstructure:"patch_size" yaml:"patch_size,flow"`
	EmbedPatch         [3]int    `mapstructure:"embed_patch" yaml:"embed_patch,flow"`
	FeatureSize        int       `mapstructure:"feature_size" yaml:"feature_size"`
	Dims               [4]int    `mapstructure:"dims" yaml:"dims,flow"`
	Depths             [4]int    `mapstructure:"depths" yaml:"depths,flow"`
	Heads              int       `mapstructure:"heads" yaml:"heads"`
	ProjSize           [4]int    `mapstructure:"proj_size" yaml:"proj_size,flow"`
	DecoderProjSize    int       `mapstructure:"decoder_proj_size" yaml:"decoder_proj_size"`
	DecoderDepth       int       `mapstructure:"decoder_depth" yaml:"decoder_depth"`
	Dropout            float64   `mapstructure:"dropout" yaml:"dropout"`
	Optimizer          Optimizer `mapstructure:"optimizer" yaml:"optimizer"`
	LR                 float64   `mapstructure:"lr" yaml:"lr"`
	Momentum           float64   `mapstructure:"momentum" yaml:"momentum"`
	Nesterov           bool      `mapstructure:"nesterov" yaml:"nesterov"`
	WeightDecay        float64   `mapstructure:"weight_decay" yaml:"weight_decay"`
	PolyPower          float64   `mapstructure:"poly_power" yaml:"poly_power"`
	Epochs             int       `mapstructure:"epochs" yaml:"epochs"`
	IterationsPerEpoch int       `mapstructure:"iterations_per_epoch" yaml:"iterations_per_epoch"`
	BatchSize          int       `mapstructure:"batch_size" yaml:"batch_size"`
	DeepSupervision    bool      `mapstructure:"deep_supervision" yaml:"deep_supervision"`
	ForegroundFraction float64   `mapstructure:"foreground_fraction" yaml:"foreground_fraction"`
	Mirror             bool      `mapstructure:"mirror" yaml:"mirror"`
	GradClip           float64   `mapstructure:"grad_clip" yaml:"grad_clip"`
	CheckpointEvery    int       `mapstructure:"checkpoint_every" yaml:"checkpoint_every"`
	Overlap            float64   `mapstructure:"overlap" yaml:"overlap"`
	TestMirror         bool      `mapstructure:"test_mirror" yaml:"test_mirror"`
	WindowBatch        int       `mapstructure:"window_batch" yaml:"window_batch"`
	// MaxDeviceAccumulatorGB bounds the sliding window's K×D×H×W probability sum on the
	// device; a bigger sum is accumulated on the host.
	MaxDeviceAccumulatorGB float64 `mapstructure:"max_device_accumulator_gb" yaml:"max_device_accumulator_gb"`
}

// Limits bound what sli2vol accepts before it allocates.
type Limits struct {
	MaxVoxels int64 `mapstructure:"max_voxels" yaml:"max_voxels"`
}

// EnvPrefix prefixes environment overrides: SLI2VOL_TRAIN_LR=3e-4 sets train.lr.
const EnvPrefix = "SLI2VOL"

// Loader builds a Config from the layers. Bind flags before calling Load.
type Loader struct {
	v *viper.Viper
}

// NewLoader starts from the embedded defaults, with SLI2VOL_* environment overrides.
func NewLoader() *Loader {
	l := newLoader()
	l.v.SetEnvPrefix(EnvPrefix)
	l.v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	l.v.AutomaticEnv()
	return l
}

func newLoader() *Loader {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defaultsYAML)); err != nil {
		panic(fmt.Sprintf("embedded defaults.yaml: %v", err)) // a build error, not user input
	}
	return &Loader{v: v}
}

// BindFlag makes a command-line flag override key when the user set it.
func (l *Loader) BindFlag(key string, f *pflag.Flag) error {
	if !l.v.IsSet(key) {
		return fmt.Errorf("flag --%s binds unknown config key %q", f.Name, key)
	}
	return l.v.BindPFlag(key, f)
}

// Load merges the YAML file (if path is not empty) over the defaults and decodes the result,
// with env and bound flags on top. Errors name the file and the key.
func (l *Loader) Load(path string) (*Config, error) {
	src := "defaults"
	if path != "" {
		src = path
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("config %s: not valid YAML: %w", path, flat(err))
		}
		if unknown := unknownKeys(m, l.v.AllSettings(), ""); len(unknown) > 0 {
			return nil, fmt.Errorf("config %s: unknown key %s", path, strings.Join(unknown, ", "))
		}
		if err := l.v.MergeConfigMap(m); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, flat(err))
		}
	}
	var c Config
	err := l.v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) {
		// Strict types: "lr: fast" or "epochs: 2.5" is an error, not a silent zero.
		dc.WeaklyTypedInput = false
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(listHook, numberHook)
	})
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", src, flat(err))
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	return &c, nil
}

// Load is NewLoader().Load(path) for callers without flags.
func Load(path string) (*Config, error) { return NewLoader().Load(path) }

// Defaults is the embedded default configuration (no file, no environment).
func Defaults() *Config {
	c, err := newLoader().Load("")
	if err != nil {
		panic(err) // the embedded defaults are part of the build
	}
	return c
}

// listHook reads "a,b" (how environment variables and flags give lists) into slices and
// fixed-size arrays.
func listHook(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || (to.Kind() != reflect.Slice && to.Kind() != reflect.Array) {
		return data, nil
	}
	s = strings.Trim(strings.TrimSpace(s), "[]")
	if s == "" {
		return []any{}, nil
	}
	parts := strings.Split(s, ",")
	if to.Kind() == reflect.Array && len(parts) != to.Len() {
		return nil, fmt.Errorf("%q has %d values, want %d", data, len(parts), to.Len())
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = strings.TrimSpace(p)
	}
	return out, nil
}

// numberHook converts what YAML, env and flags legitimately produce (ints for floats, numeric
// strings from the environment) and nothing else.
func numberHook(from, to reflect.Type, data any) (any, error) {
	switch to.Kind() {
	case reflect.Float32, reflect.Float64:
		switch d := data.(type) {
		case int:
			return float64(d), nil
		case int64:
			return float64(d), nil
		case string:
			var f float64
			if _, err := fmt.Sscan(strings.TrimSpace(d), &f); err != nil {
				return nil, fmt.Errorf("%q is not a number", d)
			}
			return f, nil
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		switch d := data.(type) {
		case string:
			var i int64
			if _, err := fmt.Sscan(strings.TrimSpace(d), &i); err != nil {
				return nil, fmt.Errorf("%q is not an integer", d)
			}
			return i, nil
		case float64:
			if d != float64(int64(d)) {
				return nil, fmt.Errorf("%v is not an integer", d)
			}
			return int64(d), nil
		}
	case reflect.Bool:
		if d, ok := data.(string); ok {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "true", "1", "yes":
				return true, nil
			case "false", "0", "no":
				return false, nil
			}
			return nil, fmt.Errorf("%q is not a boolean", d)
		}
	case reflect.String:
		switch data.(type) {
		case int, int64, float64: // e.g. slice_axis: 1
			return fmt.Sprint(data), nil
		}
	}
	return data, nil
}

func unknownKeys(m, known map[string]any, prefix string) []string {
	var out []string
	for k, v := range m {
		kk := strings.ToLower(k)
		ref, ok := known[kk]
		if !ok {
			out = append(out, prefix+k)
			continue
		}
		sub, isMap := v.(map[string]any)
		refMap, refIsMap := ref.(map[string]any)
		if isMap && refIsMap {
			out = append(out, unknownKeys(sub, refMap, prefix+k+".")...)
		}
	}
	sort.Strings(out)
	return out
}

// oneLine folds mapstructure's multi-line report into "'train.lr' "fast" is not a number".
func oneLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), "decoding failed due to the following error(s):")
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*")); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// flatError is an error whose message is folded onto one line (oneLine); errors.Is and
// errors.As still reach the original.
type flatError struct{ err error }

func (e flatError) Error() string { return oneLine(e.err) }
func (e flatError) Unwrap() error { return e.err }

func flat(err error) error { return flatError{err} }

// YAML renders the effective configuration.
func (c *Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

// Validate checks values that decoding cannot.
func (c *Config) Validate() error {
	if err := ValidDevice(c.Device); err != nil {
		return err
	}
	for _, check := range []func() error{c.validateChoices, c.validatePositive, c.validateData, c.validateUNETR} {
		if err := check(); err != nil {
			return err
		}
	}
	if c.Infer.Resize < 0 {
		return fmt.Errorf("infer.resize is %d: 0 (native size) or a slice side in pixels", c.Infer.Resize)
	}
	if c.Infer.Resize > 0 && c.Infer.Spacing.FromTraining() {
		return fmt.Errorf("infer.resize %d and infer.spacing %s both set the working size: choose one", c.Infer.Resize, c.Infer.Spacing)
	}
	if c.Infer.EncodeBatch < 0 {
		return fmt.Errorf("infer.encode_batch is %d: 0 (auto) or a number of slices", c.Infer.EncodeBatch)
	}
	if err := c.Infer.validateAdapt(); err != nil {
		return err
	}
	if len(c.Model.GEIG.Scales) == 0 {
		return fmt.Errorf("model.geig.scales is empty")
	}
	if c.Train.LR <= 0 || c.UNETR.LR <= 0 {
		return fmt.Errorf("learning rates must be positive (train.lr %g, unetr.lr %g)", c.Train.LR, c.UNETR.LR)
	}
	if c.Limits.MaxVoxels <= 0 {
		return fmt.Errorf("limits.max_voxels is %d, must be positive", c.Limits.MaxVoxels)
	}
	return nil
}

// firstError is the first non-nil of errs.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// validateChoices checks every closed choice, the typed ones included.
func (c *Config) validateChoices() error {
	return firstError(
		oneOf("data.slice_axis", c.Data.SliceAxis, "auto", "0", "1", "2"),
		oneOf("data.intensity", c.Data.Intensity, "auto", "ct", "mri"),
		oneOf("model.mode", c.Model.Mode, Modes...),
		oneOf("train.optimizer", c.Train.Optimizer, Optimizers...),
		oneOf("train.schedule", c.Train.Schedule, Schedules...),
		oneOf("train.loss", c.Train.Loss, Losses...),
		oneOf("train.amp", c.Train.AMP, AMPs...),
		oneOf("infer.object_estimate", c.Infer.ObjectEstimate, Estimates...),
		oneOf("infer.spacing", c.Infer.Spacing, Spacings...),
		oneOf("infer.adapt_norm", c.Infer.AdaptNorm, AdaptNorms...),
		oneOf("unetr.optimizer", c.UNETR.Optimizer, Optimizers...),
		oneOf("dist.backend", c.Dist.Backend, DistBackends...),
	)
}

func (c *Config) validatePositive() error {
	positive := func(key string, v int) error {
		if v <= 0 {
			return fmt.Errorf("%s is %d, must be positive", key, v)
		}
		return nil
	}
	return firstError(
		positive("model.width", c.Model.Width),
		positive("model.stages", c.Model.Stages),
		positive("model.blocks_per_stage", c.Model.BlocksPerStage),
		positive("model.feature_dim", c.Model.FeatureDim),
		positive("model.radius", c.Model.Radius),
		positive("model.edge_radius", c.Model.EdgeRadius),
		positive("model.geig.directions", c.Model.GEIG.Directions),
		positive("train.epochs", c.Train.Epochs),
		positive("train.batch_size", c.Train.BatchSize),
		positive("data.crop", c.Data.Crop),
		positive("unetr.epochs", c.UNETR.Epochs),
		positive("unetr.iterations_per_epoch", c.UNETR.IterationsPerEpoch),
		positive("unetr.batch_size", c.UNETR.BatchSize),
		positive("unetr.window_batch", c.UNETR.WindowBatch),
		positive("unetr.checkpoint_every", c.UNETR.CheckpointEvery),
		positive("dist.timeout_s", c.Dist.TimeoutS),
		positive("dist.bucket_cap_mb", c.Dist.BucketCapMB),
	)
}

func (c *Config) validateData() error {
	d := c.Data
	if len(d.PairStrides) == 0 {
		return fmt.Errorf("data.pair_strides is empty")
	}
	for _, k := range d.PairStrides {
		if k <= 0 {
			return fmt.Errorf("data.pair_strides has %d, strides must be positive", k)
		}
	}
	if d.ResizeRange[0] > d.ResizeRange[1] || d.ResizeRange[0] < d.Crop {
		return fmt.Errorf("data.resize_range %v must be ordered and not below data.crop %d", d.ResizeRange, d.Crop)
	}
	if d.IntensityScale <= 0 {
		return fmt.Errorf("data.intensity_scale is %g, must be positive", d.IntensityScale)
	}
	if d.CTWindow[0] >= d.CTWindow[1] {
		return fmt.Errorf("data.ct_window %v is empty", d.CTWindow)
	}
	if d.MaxResidentGB < 0 || d.Workers < 0 || d.Prefetch < 0 || d.VolumeGroup < 0 {
		return fmt.Errorf("data.max_resident_gb %g, data.workers %d, data.prefetch %d and data.volume_group %d must not be negative",
			d.MaxResidentGB, d.Workers, d.Prefetch, d.VolumeGroup)
	}
	return nil
}

func (c *Config) validateUNETR() error {
	u := c.UNETR
	for a := range 3 {
		if e := u.EmbedPatch[a]; e < 1 || u.PatchSize[a] < 8*e || u.PatchSize[a]%(8*e) != 0 {
			return fmt.Errorf("unetr.patch_size %v must be a multiple of 8 × unetr.embed_patch %v on every axis (the encoder halves the grid three times)",
				u.PatchSize, u.EmbedPatch)
		}
	}
	if u.MaxDeviceAccumulatorGB < 0 {
		return fmt.Errorf("unetr.max_device_accumulator_gb is %g, must not be negative", u.MaxDeviceAccumulatorGB)
	}
	if u.Overlap < 0 || u.Overlap >= 1 || u.ForegroundFraction < 0 || u.ForegroundFraction > 1 || u.GradClip < 0 {
		return fmt.Errorf("unetr.overlap %g must be in [0, 1), unetr.foreground_fraction %g in [0, 1], unetr.grad_clip %g not negative",
			u.Overlap, u.ForegroundFraction, u.GradClip)
	}
	return nil
}

// ValidDevice accepts auto, cpu, cuda and cuda:N.
func ValidDevice(d string) error {
	switch {
	case d == "auto", d == "cpu", d == "cuda":
		return nil
	case strings.HasPrefix(d, "cuda:"):
		var n int
		if _, err := fmt.Sscanf(d, "cuda:%d", &n); err == nil && n >= 0 && fmt.Sprintf("cuda:%d", n) == d {
			return nil
		}
	}
	return fmt.Errorf("device is %q, want auto, cpu, cuda or cuda:N", d)
}

// ForInference is a trained run's config (c) as a command runs it: the command's device and
// threads always, and the command's infer section when the user set an inference setting on
// its command line (inferSet); otherwise the run's own.
func (c *Config) ForInference(command *Config, inferSet bool) *Config {
	out := *c
	out.Device, out.Threads = command.Device, command.Threads
	if inferSet {
		out.Infer = command.Infer
	}
	// How many slices are encoded together is a property of the machine, like the device.
	out.Infer.EncodeBatch = command.Infer.EncodeBatch
	return &out
}

// Adapts reports whether propagation adapts a copy of the network to each volume first
// (gradient steps, re-estimated batch-norm statistics, or both).
func (i Infer) Adapts() bool { return i.AdaptSteps > 0 || i.AdaptNorm == AdaptNormVolume }

// WithoutAdaptation is i with test-time adaptation off.
func (i Infer) WithoutAdaptation() Infer {
	i.AdaptSteps = 0
	if i.AdaptNorm == AdaptNormVolume {
		i.AdaptNorm = AdaptNormAuto
	}
	return i
}

// validateAdapt checks the test-time adaptation settings.
func (i Infer) validateAdapt() error {
	switch {
	case i.AdaptSteps < 0:
		return fmt.Errorf("infer.adapt_steps is %d: 0 (no adaptation) or a number of steps", i.AdaptSteps)
	case i.AdaptSteps > 0 && !(i.AdaptLR > 0):
		return fmt.Errorf("infer.adapt_lr is %g: adaptation needs a positive learning rate", i.AdaptLR)
	case i.AdaptRounds < 1:
		return fmt.Errorf("infer.adapt_rounds is %d: at least 1", i.AdaptRounds)
	case !(i.AdaptMix > 0 && i.AdaptMix <= 1):
		return fmt.Errorf("infer.adapt_mix is %g: the adapted weights' share, in (0, 1] (1: the adapted network alone)", i.AdaptMix)
	}
	return nil
}

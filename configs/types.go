package configs

import (
	"fmt"
	"slices"
	"strings"
)

// The config's closed choices are named types: a value is checked once, in Validate, and code
// compares against the constants below instead of spelling the strings again.

// Mode is the correspondence-flow method (model.mode).
type Mode string

const (
	ModeSli2Vol     Mode = "sli2vol"  // Sli2Vol: edge-profile inputs, slice features only
	ModeSli2VolPlus Mode = "sli2vol+" // Sli2Vol+: GEIG inputs, the OEG-CFN fed with pseudo-labels
)

// UsesPL reports whether the method trains on pseudo-labels (and so can take an object
// estimate at test time).
func (m Mode) UsesPL() bool { return m == ModeSli2VolPlus }

// Estimate is the test-time object estimate fed where training fed pseudo-labels
// (infer.object_estimate).
type Estimate string

const (
	EstimateNone       Estimate = "none"       // the paper: slice features only
	EstimatePropagated Estimate = "propagated" // the mask being carried stands in for the PL
	EstimateModel      Estimate = "model"      // a UNETR++ run's prediction of the volume
)

// Spacing is the in-plane scale propagation works at (infer.spacing).
type Spacing string

// FromTraining reports whether the scale comes from the run's scale.json.
func (s Spacing) FromTraining() bool { return s == SpacingTraining || s == SpacingFiner }

const (
	SpacingNative   Spacing = "native"   // the slice's own pixels (or infer.resize)
	SpacingTraining Spacing = "training" // resampled to the mm/px training saw (the run's scale.json)
	SpacingFiner    Spacing = "finer"    // as training where that is finer than the slice, else native
)

// AdaptNorm is what test-time adaptation does with batch normalisation (infer.adapt_norm).
type AdaptNorm string

const (
	// AdaptNormAuto: frozen where the adaptation batches lack a stream the network's
	// statistics were trained on (a Sli2Vol+ network adapting without pseudo-labels), batch
	// otherwise.
	AdaptNormAuto AdaptNorm = "auto"
	// AdaptNormBatch: the steps run batch norm as training does, on the batch's statistics,
	// and the running statistics move towards the test volume's.
	AdaptNormBatch AdaptNorm = "batch"
	// AdaptNormFrozen: the steps normalise with the trained running statistics and leave them
	// as they are; only the weights adapt. A Sli2Vol+ network normalises with statistics of
	// slices and pseudo-labels together, which a volume without pseudo-labels cannot give.
	AdaptNormFrozen AdaptNorm = "frozen"
	// AdaptNormVolume: after the steps (if any), the running statistics are re-estimated on
	// the test volume's slices (AdaBN): a plain mean over about every slice once.
	AdaptNormVolume AdaptNorm = "volume"
)

// Optimizer is train.optimizer and unetr.optimizer.
type Optimizer string

const (
	OptimizerAdamW Optimizer = "adamw"
	OptimizerSGD   Optimizer = "sgd"
)

// Loss is the reconstruction loss of the correspondence flow (train.loss).
type Loss string

const (
	LossL1       Loss = "l1"
	LossSmoothL1 Loss = "smooth_l1"
)

// Schedule is the correspondence flow's learning-rate schedule (train.schedule).
type Schedule string

const (
	ScheduleConstant Schedule = "constant"
	ScheduleStep     Schedule = "step"
	SchedulePoly     Schedule = "poly"
)

// AMP is the mixed-precision mode of the correspondence-flow trainer (train.amp).
type AMP string

const (
	AMPNone AMP = "none"
	AMPBF16 AMP = "bf16"
)

// DistBackend is the process group's transport (dist.backend).
type DistBackend string

const (
	DistAuto DistBackend = "auto" // NCCL on CUDA when the build has it, Gloo otherwise
	DistGloo DistBackend = "gloo"
	DistNCCL DistBackend = "nccl"
)

// The allowed values of each choice, in the order error messages list them.
var (
	Modes        = []Mode{ModeSli2Vol, ModeSli2VolPlus}
	Estimates    = []Estimate{EstimateNone, EstimatePropagated, EstimateModel}
	Spacings     = []Spacing{SpacingNative, SpacingTraining, SpacingFiner}
	AdaptNorms   = []AdaptNorm{AdaptNormAuto, AdaptNormBatch, AdaptNormFrozen, AdaptNormVolume}
	Optimizers   = []Optimizer{OptimizerAdamW, OptimizerSGD}
	Losses       = []Loss{LossL1, LossSmoothL1}
	Schedules    = []Schedule{ScheduleConstant, ScheduleStep, SchedulePoly}
	AMPs         = []AMP{AMPNone, AMPBF16}
	DistBackends = []DistBackend{DistAuto, DistGloo, DistNCCL}
)

// oneOf checks that the value of key is one of allowed.
func oneOf[T ~string](key string, v T, allowed ...T) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return fmt.Errorf("%s is %q, want one of %s", key, v, strings.Join(names, ", "))
}

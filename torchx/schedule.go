package torchx

import "math"

// A Schedule gives the learning rate for a step (0-based). Its only state is the step
// count, which checkpoints store, so resuming needs nothing else.
type Schedule interface {
	LR(step int) float64
}

// ConstantLR keeps the base rate.
type ConstantLR struct{ Base float64 }

// LR implements Schedule.
func (s ConstantLR) LR(int) float64 { return s.Base }

// StepLR multiplies the rate by Gamma every StepSize steps (torch.optim.lr_scheduler.StepLR).
type StepLR struct {
	Base     float64
	StepSize int
	Gamma    float64
}

// LR implements Schedule.
func (s StepLR) LR(step int) float64 {
	if s.StepSize <= 0 {
		return s.Base
	}
	return s.Base * math.Pow(s.Gamma, float64(step/s.StepSize))
}

// PolyLR decays as base·(1 − step/total)^power, nnU-Net's schedule (power 0.9).
type PolyLR struct {
	Base  float64
	Total int
	Power float64
}

// LR implements Schedule.
func (s PolyLR) LR(step int) float64 {
	if s.Total <= 0 || step >= s.Total {
		return 0
	}
	return s.Base * math.Pow(1-float64(step)/float64(s.Total), s.Power)
}

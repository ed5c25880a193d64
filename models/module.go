package models

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/sli2vol/sli2vol/torchx"
)

// Tensor is a libtorch tensor (gotorch's, via torchx).
type Tensor = torchx.Tensor

// A Module is a plain struct of sub-modules and tensors. Visit reports its tensors under
// PyTorch-style dotted names ("layer1.0.conv1.weight") and its train/eval switches, so that
// state dicts, parameter lists, device moves and mode changes need no reflection.
type Module interface {
	Visit(prefix string, v *Visitor)
}

// Visitor receives what a Module reports. Nil callbacks are skipped.
type Visitor struct {
	Tensor    func(name string, t *Tensor, buffer bool)
	Mode      func(training *bool)
	BatchNorm func(b *BatchNorm) // every batch-norm layer
}

func (v *Visitor) param(prefix, name string, t *Tensor) {
	if v.Tensor != nil && t.T != nil {
		v.Tensor(join(prefix, name), t, false)
	}
}

func (v *Visitor) buffer(prefix, name string, t *Tensor) {
	if v.Tensor != nil && t.T != nil {
		v.Tensor(join(prefix, name), t, true)
	}
}

func (v *Visitor) mode(training *bool) {
	if v.Mode != nil {
		v.Mode(training)
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// visitChild visits m under prefix.name when m is not nil: neither a nil interface nor a
// nil pointer (or other nil-able value) of a Module type, such as an absent *Conv2d.
func visitChild(prefix, name string, m Module, v *Visitor) {
	if isNil(m) {
		return
	}
	m.Visit(join(prefix, name), v)
}

// isNil reports whether m is nil or holds a nil pointer, map, slice, func, chan or interface.
func isNil(m Module) bool {
	if m == nil {
		return true
	}
	switch r := reflect.ValueOf(m); r.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return r.IsNil()
	}
	return false
}

// Parameters lists m's trainable tensors in a fixed order (sorted by name). A tensor that
// a module reports under two names (UNETR++'s shared E = F projection) is listed once, under
// its first name, so optimizers and gradient clipping see it once.
func Parameters(m Module) []Tensor {
	var out []Tensor
	for _, p := range uniqueParams(m) {
		out = append(out, *p.t)
	}
	return out
}

// SetCrossBatchNorm makes every batch-norm layer of m normalise training batches with n
// (data-parallel SyncBatchNorm); nil restores per-process statistics.
func SetCrossBatchNorm(m Module, n CrossBatchNorm) {
	m.Visit("", &Visitor{BatchNorm: func(b *BatchNorm) { b.Cross = n }})
}

// Buffers lists m's non-trainable state (batch-norm running statistics and counters), sorted
// by name: what data-parallel training keeps equal on every rank.
func Buffers(m Module) []Tensor {
	type named struct {
		name string
		t    Tensor
	}
	var all []named
	m.Visit("", &Visitor{Tensor: func(name string, t *Tensor, buffer bool) {
		if buffer {
			all = append(all, named{name, *t})
		}
	}})
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	out := make([]Tensor, len(all))
	for i, b := range all {
		out[i] = b.t
	}
	return out
}

type namedParam struct {
	name string
	t    *Tensor
}

func uniqueParams(m Module) []namedParam {
	var all []namedParam
	m.Visit("", &Visitor{Tensor: func(name string, t *Tensor, buffer bool) {
		if !buffer {
			all = append(all, namedParam{name, t})
		}
	}})
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	seen := map[*Tensor]bool{}
	out := all[:0]
	for _, p := range all {
		if !seen[p.t] {
			seen[p.t] = true
			out = append(out, p)
		}
	}
	return out
}

// StateDict maps PyTorch-style names to m's parameters and buffers.
func StateDict(m Module) map[string]Tensor {
	sd := map[string]Tensor{}
	m.Visit("", &Visitor{Tensor: func(name string, t *Tensor, _ bool) { sd[name] = *t }})
	return sd
}

// LoadStateDict copies sd into m's tensors (on their devices). Like PyTorch's strict mode,
// missing or unexpected names and shape mismatches are errors, and nothing is changed then.
func LoadStateDict(m Module, sd map[string]Tensor) error {
	own := StateDict(m)
	if err := fits(own, sd); err != nil {
		return err
	}
	return torchx.Try(func() {
		for n, t := range own {
			torchx.CopyInto(t, sd[n])
		}
	})
}

// fits checks that sd has exactly own's names, each with own's shape.
func fits(own, sd map[string]Tensor) error {
	var missing, unexpected []string
	for n := range own {
		if _, ok := sd[n]; !ok {
			missing = append(missing, n)
		}
	}
	for n := range sd {
		if _, ok := own[n]; !ok {
			unexpected = append(unexpected, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(unexpected)
	if len(missing) > 0 || len(unexpected) > 0 {
		return fmt.Errorf("state dict does not fit this model: missing %v, unexpected %v (a model of another architecture or config?)", short(missing), short(unexpected))
	}
	for n, t := range own {
		if a, b := fmt.Sprint(t.Shape()), fmt.Sprint(sd[n].Shape()); a != b {
			return fmt.Errorf("state dict entry %s has shape %s, the model needs %s (another config?)", n, b, a)
		}
	}
	return nil
}

func short(s []string) []string {
	if len(s) > 5 {
		return append(s[:5:5], fmt.Sprintf("... %d more", len(s)-5))
	}
	return s
}

// SetTraining switches m between training (batch statistics, dropout) and evaluation.
func SetTraining(m Module, on bool) {
	m.Visit("", &Visitor{Mode: func(t *bool) { *t = on }})
}

// To moves m's tensors to device. Parameters stay leaves that require grad.
func To(m Module, device string) {
	m.Visit("", &Visitor{Tensor: func(_ string, t *Tensor, buffer bool) {
		if torchx.DeviceOf(*t) == device {
			return
		}
		moved := torchx.Detach(torchx.To(*t, device, -1))
		if !buffer {
			torchx.SetRequiresGrad(moved, true)
		}
		*t = moved
	}})
}

// ToChannelsLast stores m's 4D tensors (conv weights) channels-last, for cuDNN's tensor-core
// convolutions. Parameters stay leaves that require grad.
func ToChannelsLast(m Module) {
	m.Visit("", &Visitor{Tensor: func(_ string, t *Tensor, buffer bool) {
		if len(t.Shape()) != 4 {
			return
		}
		moved := torchx.Detach(torchx.ChannelsLast(*t))
		if !buffer {
			torchx.SetRequiresGrad(moved, true)
		}
		*t = moved
	}})
}

// ParamCount is the number of trainable scalars in m.
func ParamCount(m Module) int64 {
	var n int64
	for _, p := range Parameters(m) {
		n += torchx.Numel(p)
	}
	return n
}

// Free releases m's tensors now (each once, however many names share it), for a model made
// for one task — a test-time-adapted copy — whose memory should not wait for the collector.
// m must not be used afterwards.
func Free(m Module) {
	seen := map[any]bool{}
	m.Visit("", &Visitor{Tensor: func(_ string, t *Tensor, _ bool) {
		if t.T == nil || seen[t.T] {
			return
		}
		seen[t.T] = true
		torchx.Free(*t)
	}})
}

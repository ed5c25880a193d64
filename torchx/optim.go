package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Optimizer is a libtorch optimizer over a fixed list of parameters.
type Optimizer struct {
	p      C.TxOptim
	params []Tensor // kept reachable: libtorch holds the same tensors
}

// AdamWOpts are torch.optim.AdamW's hyper-parameters (decoupled weight decay).
type AdamWOpts struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
}

// SGDOpts are torch.optim.SGD's hyper-parameters.
type SGDOpts struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool
}

func newOptim(params []Tensor, fn func(p *C.TxTensor, n C.int, out *C.TxOptim) C.TxErr) *Optimizer {
	ps, _ := handles(params)
	var o C.TxOptim
	check(fn(ps, C.int(len(params)), &o))
	keep(params...)
	opt := &Optimizer{p: o, params: append([]Tensor(nil), params...)}
	runtime.SetFinalizer(opt, (*Optimizer).Close)
	return opt
}

// NewAdamW builds AdamW; zero Beta1/Beta2/Eps take PyTorch's defaults (0.9, 0.999, 1e-8).
func NewAdamW(params []Tensor, o AdamWOpts) *Optimizer {
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	return newOptim(params, func(p *C.TxTensor, n C.int, out *C.TxOptim) C.TxErr {
		return C.tx_optim_new(C.TX_ADAMW, p, n, C.double(o.LR), C.double(o.Beta1), C.double(o.Beta2),
			C.double(o.Eps), C.double(o.WeightDecay), 0, 0, cbool(false), out)
	})
}

// NewSGD builds SGD with optional momentum and Nesterov momentum.
func NewSGD(params []Tensor, o SGDOpts) *Optimizer {
	if o.Nesterov && (o.Momentum <= 0 || o.Dampening != 0) {
		panic(&Error{Msg: "Nesterov momentum requires a momentum and zero dampening"})
	}
	return newOptim(params, func(p *C.TxTensor, n C.int, out *C.TxOptim) C.TxErr {
		return C.tx_optim_new(C.TX_SGD, p, n, C.double(o.LR), 0, 0, 0, C.double(o.WeightDecay),
			C.double(o.Momentum), C.double(o.Dampening), cbool(o.Nesterov), out)
	})
}

func (o *Optimizer) handle() C.TxOptim {
	if o == nil || o.p == nil {
		panic(&Error{Msg: "optimizer is closed"})
	}
	return o.p
}

// Step applies one update from the parameters' gradients.
func (o *Optimizer) Step() {
	check(C.tx_optim_step(o.handle()))
	runtime.KeepAlive(o)
}

// ZeroGrad zeroes the parameters' gradients.
func (o *Optimizer) ZeroGrad() {
	check(C.tx_optim_zero_grad(o.handle()))
	runtime.KeepAlive(o)
}

// SetLR sets the learning rate of every parameter group.
func (o *Optimizer) SetLR(lr float64) {
	check(C.tx_optim_set_lr(o.handle(), C.double(lr)))
	runtime.KeepAlive(o)
}

// LR is the current learning rate.
func (o *Optimizer) LR() float64 {
	var v C.double
	check(C.tx_optim_get_lr(o.handle(), &v))
	runtime.KeepAlive(o)
	return float64(v)
}

// State returns the optimizer's state (moments, momentum buffers, step counts and
// hyper-parameters) in libtorch's archive format, for checkpoints.
func (o *Optimizer) State() []byte {
	var buf *C.char
	var n C.int64_t
	check(C.tx_optim_save(o.handle(), &buf, &n))
	runtime.KeepAlive(o)
	defer C.free(unsafe.Pointer(buf))
	return C.GoBytes(unsafe.Pointer(buf), C.int(n))
}

// LoadState restores what State returned, for an optimizer over the same parameter list.
func (o *Optimizer) LoadState(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("optimizer state is empty")
	}
	return Try(func() {
		check(C.tx_optim_load(o.handle(), (*C.char)(unsafe.Pointer(&b[0])), C.int64_t(len(b))))
		runtime.KeepAlive(b)
		runtime.KeepAlive(o)
	})
}

// Close frees the optimizer's C++ state.
func (o *Optimizer) Close() {
	if o != nil && o.p != nil {
		C.tx_optim_free(o.p)
		o.p = nil
		runtime.SetFinalizer(o, nil)
	}
}

// ClipGradNormAsync scales the gradients of params so that their joint L2 norm is at most
// maxNorm (torch.nn.utils.clip_grad_norm_); parameters without a gradient are skipped. It
// does not read the norm back, so a GPU keeps its queue of work (reading a value waits for
// everything before it).
func ClipGradNormAsync(params []Tensor, maxNorm float64) { clipGradNorm(params, maxNorm, false) }

// clipGradNorm clips as ClipGradNormAsync does and, when read, returns the norm before
// clipping (0 otherwise).
func clipGradNorm(params []Tensor, maxNorm float64, read bool) float64 {
	ps, _ := handles(params)
	var norm C.double
	var np *C.double
	if read {
		np = &norm
	}
	check(C.tx_clip_grad_norm(ps, C.int(len(params)), C.double(maxNorm), np))
	keep(params...)
	return float64(norm)
}

// ForeachMode picks how Optimizer.Step and ZeroGrad walk the parameters. The arithmetic is
// libtorch's AdamW/SGD either way, in the same order; the state is libtorch's, so
// checkpoints do not depend on it.
type ForeachMode int

const (
	// ForeachAuto: multi-tensor updates when every parameter is on CUDA (the default).
	ForeachAuto ForeachMode = C.TX_FOREACH_AUTO
	// ForeachOn: multi-tensor updates on any device.
	ForeachOn ForeachMode = C.TX_FOREACH_ON
	// ForeachOff: libtorch's per-parameter loop.
	ForeachOff ForeachMode = C.TX_FOREACH_OFF
)

// SetOptimizerForeach sets the mode for the whole process (tests and benchmarks compare them).
func SetOptimizerForeach(m ForeachMode) { C.tx_set_optim_foreach(C.TxForeachMode(m)) }

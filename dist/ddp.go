package dist

// #include <stdlib.h>
// #include "dist.h"
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/sli2vol/sli2vol/torchx"
)

// DefaultBucketCapMB is DistributedDataParallel's bucket_cap_mb.
const DefaultBucketCapMB = 25

// DDP is DistributedDataParallel's part in the training of one model: at start, rank 0's
// parameters and buffers on every rank; in each step, rank 0's buffers again (DDP's
// broadcast_buffers) and the gradients averaged over the ranks by libtorch's Reducer, in
// buckets all-reduced while the backward pass still runs.
type DDP struct {
	g       *Group
	r       C.TxReducer
	buffers []torchx.Tensor
}

// NewDDP makes every rank's params and buffers rank 0's and registers the Reducer's hooks on
// params' gradients. Every rank must call it with the same model (checked).
func NewDDP(g *Group, params, buffers []torchx.Tensor, bucketCapMB int) (*DDP, error) {
	h := handles(params)
	if err := cerr(C.tx_group_verify(g.pg, &h[0], C.int(len(h)))); err != nil {
		return nil, fmt.Errorf("rank %d of %d: the ranks' models differ (%w)", g.rank, g.size, err)
	}
	if err := g.Broadcast(append(append([]torchx.Tensor(nil), params...), buffers...), 0); err != nil {
		return nil, err
	}
	if bucketCapMB <= 0 {
		bucketCapMB = DefaultBucketCapMB
	}
	d := &DDP{g: g, buffers: buffers}
	if err := cerr(C.tx_reducer_new(g.pg, &h[0], C.int(len(h)), C.int64_t(bucketCapMB)<<20, &d.r)); err != nil {
		return nil, g.wrap("setting up gradient reduction", err)
	}
	return d, nil
}

// BeforeForward readies a training step: the Reducer's per-step state (its buckets rebuilt
// in gradient order after the first step, as DDP does) and rank 0's buffers (batch-norm
// statistics) on every rank. It panics with *torchx.Error on failure, as torchx ops do.
func (d *DDP) BeforeForward() {
	check(cerr(C.tx_reducer_prepare_forward(d.r)))
	if len(d.buffers) > 0 {
		check(d.g.Broadcast(d.buffers, 0))
	}
}

// BeforeBackward arms the Reducer for this step's backward pass: when it returns, every
// parameter's gradient is the average over the ranks.
func (d *DDP) BeforeBackward() { check(cerr(C.tx_reducer_prepare_backward(d.r))) }

// AverageLoss is the mean of a step's loss over the ranks: what metrics report, and what the
// non-finite-loss check sees, so that every rank takes the same decision.
func (d *DDP) AverageLoss(loss float64) float64 {
	v, err := d.g.AllReduceScalars(false, loss)
	check(err)
	return v[0] / float64(d.g.size)
}

// Close removes the Reducer.
func (d *DDP) Close() {
	if d != nil && d.r != nil {
		C.tx_reducer_free(d.r)
		d.r = nil
	}
}

// check panics as torchx ops do, with a *torchx.Error that torchx.Try turns back into an
// error at the API boundary.
func check(err error) {
	if err == nil {
		return
	}
	var te *torchx.Error
	if errors.As(err, &te) && te == err {
		panic(te)
	}
	panic(&torchx.Error{Msg: err.Error()})
}

// SyncBatchNorm is batch normalisation over every rank's batch, as torch.nn.SyncBatchNorm:
// it satisfies models.CrossBatchNorm, and data-parallel training with dist.sync_batchnorm
// puts it into every batch-norm layer.
type SyncBatchNorm struct{ g *Group }

// SyncBatchNorm normalises over this group's ranks.
func (g *Group) SyncBatchNorm() SyncBatchNorm { return SyncBatchNorm{g} }

// BatchNorm normalises x (N×C×…) in training with the global batch statistics and updates
// the running statistics with them; its backward pass all-reduces too.
func (s SyncBatchNorm) BatchNorm(x, weight, bias, runningMean, runningVar torchx.Tensor, momentum, eps float64) torchx.Tensor {
	var out C.TxTensor
	h := handles([]torchx.Tensor{x, weight, bias, runningMean, runningVar})
	check(cerr(C.tx_sync_batch_norm(s.g.pg, h[0], h[1], h[2], h[3], h[4], C.double(momentum), C.double(eps), &out)))
	runtime.KeepAlive(x.T)
	runtime.KeepAlive(weight.T)
	runtime.KeepAlive(bias.T)
	runtime.KeepAlive(runningMean.T)
	runtime.KeepAlive(runningVar.T)
	return torchx.Adopt(unsafe.Pointer(out))
}

package models

import (
	"fmt"

	"github.com/sli2vol/sli2vol/torchx"
)

// BasicBlock is ResNet's residual block (3×3 conv, BN, ReLU, 3×3 conv, BN, + shortcut, ReLU)
// at stride 1; the shortcut is a 1×1 conv + BN when the width changes (torchvision naming:
// downsample.0, downsample.1).
type BasicBlock struct {
	Conv1 *Conv2d
	BN1   *BatchNorm
	Conv2 *Conv2d
	BN2   *BatchNorm
	Down  *Conv2d
	DownB *BatchNorm
}

func newBasicBlock(in, out int) *BasicBlock {
	b := &BasicBlock{
		Conv1: NewConv2d(in, out, 3, 1, 1, false), BN1: NewBatchNorm2d(out),
		Conv2: NewConv2d(out, out, 3, 1, 1, false), BN2: NewBatchNorm2d(out),
	}
	if in != out {
		b.Down, b.DownB = NewConv2d(in, out, 1, 1, 0, false), NewBatchNorm2d(out)
	}
	return b
}

// Visit implements Module.
func (b *BasicBlock) Visit(prefix string, v *Visitor) {
	visitChild(prefix, "conv1", b.Conv1, v)
	visitChild(prefix, "bn1", b.BN1, v)
	visitChild(prefix, "conv2", b.Conv2, v)
	visitChild(prefix, "bn2", b.BN2, v)
	if b.Down != nil {
		visitChild(prefix, "downsample.0", b.Down, v)
		visitChild(prefix, "downsample.1", b.DownB, v)
	}
}

// Forward applies the block.
func (b *BasicBlock) Forward(x Tensor) Tensor {
	return torchx.Tidy(func() Tensor { // the block's temporaries go at its end (see torchx.Tidy)
		h := torchx.Relu(b.BN1.Forward(b.Conv1.Forward(x)))
		h = b.BN2.Forward(b.Conv2.Forward(h))
		short := x
		if b.Down != nil {
			short = b.DownB.Forward(b.Down.Forward(x))
		}
		return torchx.Relu(torchx.Add(h, short))
	})
}

// Encoder is Sli2Vol's "ResNet18 at original size": a 7×7 stem (stride 1) + BN + ReLU,
// stages of residual blocks with widths w, 2w, 4w, ... and stride 1 everywhere (features keep
// the slice's resolution), then a 3×3 conv with bias to the feature size.
type Encoder struct {
	Conv1  *Conv2d
	BN1    *BatchNorm
	Layers [][]*BasicBlock
	Out    *Conv2d
}

// EncoderConfig sizes an Encoder.
type EncoderConfig struct {
	InChannels, Width, Stages, BlocksPerStage, FeatureDim int
}

// NewEncoder builds an encoder with fresh weights from libtorch's generator.
func NewEncoder(c EncoderConfig) *Encoder {
	e := &Encoder{Conv1: NewConv2d(c.InChannels, c.Width, 7, 1, 3, false), BN1: NewBatchNorm2d(c.Width)}
	in := c.Width
	for s := 0; s < c.Stages; s++ {
		out := c.Width << s
		var blocks []*BasicBlock
		for j := 0; j < c.BlocksPerStage; j++ {
			blocks = append(blocks, newBasicBlock(in, out))
			in = out
		}
		e.Layers = append(e.Layers, blocks)
	}
	e.Out = NewConv2d(in, c.FeatureDim, 3, 1, 1, true)
	return e
}

// Visit implements Module: conv1, bn1, layer1.0.conv1, ..., conv_out.
func (e *Encoder) Visit(prefix string, v *Visitor) {
	visitChild(prefix, "conv1", e.Conv1, v)
	visitChild(prefix, "bn1", e.BN1, v)
	for s, blocks := range e.Layers {
		for j, b := range blocks {
			visitChild(prefix, fmt.Sprintf("layer%d.%d", s+1, j), b, v)
		}
	}
	visitChild(prefix, "conv_out", e.Out, v)
}

// Forward maps B×C_in×H×W to B×F×H×W.
func (e *Encoder) Forward(x Tensor) Tensor {
	return torchx.Tidy(func() Tensor {
		h := torchx.Relu(e.BN1.Forward(e.Conv1.Forward(x)))
		for _, blocks := range e.Layers {
			for _, b := range blocks {
				h = b.Forward(h)
			}
		}
		return e.Out.Forward(h)
	})
}

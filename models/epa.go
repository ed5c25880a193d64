package models

import (
	"fmt"

	"github.com/sli2vol/sli2vol/torchx"
)

// EPA is UNETR++'s efficient paired attention over N = D·H·W tokens of C channels:
// shared query/key projections feed a channel attention (C/h × C/h per head) and a spatial
// attention whose keys and values are projected from N down to P tokens by one shared
// linear map (E = F), so its cost is linear in N. Each branch has a learned temperature and
// its own output projection to C/2; the two halves are concatenated.
type EPA struct {
	Heads                     int64
	Temperature, Temperature2 Tensor // (heads, 1, 1)
	QKVV                      *Linear
	E                         *Linear // also reported as "F": the official module shares one
	OutProj, OutProj2         *Linear
	AttnDrop                  float64
	Training                  bool
}

// NewEPA builds the block for tokens tokens of hidden channels. truncNormal selects the
// encoder's N(0, 0.02²) init for the linear maps (the decoder keeps PyTorch's default).
func NewEPA(tokens, hidden, proj, heads int, drop float64, truncNormal bool) (*EPA, error) {
	if hidden%heads != 0 || hidden%2 != 0 {
		return nil, fmt.Errorf("EPA: %d channels do not split into %d heads and two halves", hidden, heads)
	}
	lin := NewLinear
	if truncNormal {
		lin = NewLinearTruncNormal
	}
	hs := []int64{int64(heads), 1, 1}
	return &EPA{
		Heads:        int64(heads),
		Temperature:  newParam(torchx.Full(hs, 1, torchx.Float32, "cpu")),
		Temperature2: newParam(torchx.Full(hs, 1, torchx.Float32, "cpu")),
		QKVV:         lin(hidden, 4*hidden, false),
		E:            lin(tokens, proj, true),
		OutProj:      lin(hidden, hidden/2, true),
		OutProj2:     lin(hidden, hidden/2, true),
		AttnDrop:     drop,
		Training:     true,
	}, nil
}

// Visit implements Module. E's tensors are reported under both "E" and "F", as PyTorch's
// state_dict of the official module lists them; loading either name fills the one tensor.
func (a *EPA) Visit(prefix string, v *Visitor) {
	v.param(prefix, "temperature", &a.Temperature)
	v.param(prefix, "temperature2", &a.Temperature2)
	visitChild(prefix, "qkvv", a.QKVV, v)
	visitChild(prefix, "E", a.E, v)
	visitChild(prefix, "F", a.E, v)
	visitChild(prefix, "out_proj", a.OutProj, v)
	visitChild(prefix, "out_proj2", a.OutProj2, v)
	v.mode(&a.Training)
}

// Forward maps x (B×N×C) to B×N×C.
func (a *EPA) Forward(x Tensor) Tensor { return torchx.Tidy(func() Tensor { return a.forward(x) }) }

func (a *EPA) forward(x Tensor) Tensor {
	s := x.Shape()
	b, n, c := s[0], s[1], s[2]
	d := c / a.Heads
	// (B, N, 4, h, d) → (4, B, h, d, N): each of q, k, v_CA, v_SA as heads × channels × tokens.
	qkvv := torchx.Permute(torchx.Reshape(a.QKVV.Forward(x), b, n, 4, a.Heads, d), 2, 0, 3, 4, 1)
	part := func(i int64) Tensor { return torchx.Squeeze(torchx.Narrow(qkvv, 0, i, 1), 0) }
	q, k, vCA, vSA := part(0), part(1), part(2), part(3)

	kProj := a.E.Forward(k)   // (B, h, d, P)
	vProj := a.E.Forward(vSA) // (B, h, d, P)
	q, k = l2normalize(q), l2normalize(k)

	// Channel attention: d × d per head.
	attnCA := torchx.Softmax(torchx.Mul(torchx.Matmul(q, torchx.Permute(k, 0, 1, 3, 2)), a.Temperature), -1)
	attnCA = torchx.Dropout(attnCA, a.AttnDrop, a.Training)
	xCA := torchx.Reshape(torchx.Permute(torchx.Matmul(attnCA, vCA), 0, 3, 1, 2), b, n, c) // (B, N, h, d)

	// Spatial attention: N × P per head.
	attnSA := torchx.Softmax(torchx.Mul(torchx.Matmul(torchx.Permute(q, 0, 1, 3, 2), kProj), a.Temperature2), -1)
	attnSA = torchx.Dropout(attnSA, a.AttnDrop, a.Training)
	// (B, h, N, d) permuted to (B, d, h, N) and read as (B, N, C): the official module does
	// exactly this (it interleaves tokens and channels); it is kept so that official
	// weights load and behave the same.
	xSA := torchx.Reshape(torchx.Permute(torchx.Matmul(attnSA, torchx.Permute(vProj, 0, 1, 3, 2)), 0, 3, 1, 2), b, n, c)

	return torchx.Cat([]Tensor{a.OutProj.Forward(xSA), a.OutProj2.Forward(xCA)}, -1)
}

// l2normalize is torch.nn.functional.normalize over the last dim (eps 1e-12).
func l2normalize(x Tensor) Tensor {
	norm := torchx.ClampMin(torchx.Sqrt(torchx.Sum(torchx.Mul(x, x), true, -1)), 1e-12)
	return torchx.Div(x, norm)
}

// TransformerBlock is UNETR++'s EPA block with its convolutional tail:
// x + γ·EPA(LN(x + pos)), then a residual conv block and a 1×1×1 conv (with channel
// dropout) added back.
type TransformerBlock struct {
	Norm     *LayerNorm
	Gamma    Tensor // (C), initialised to 1e-6 so each block starts near the identity
	EPA      *EPA
	Conv51   *ResBlock3d // batch norm
	Conv8    *Conv3d     // 1×1×1 with bias, after Dropout3d(0.1)
	PosEmbed Tensor      // (1, N, C), zeros
	ConvDrop float64     // the Dropout3d before Conv8 (0.1)
	Training bool
}

// NewTransformerBlock builds a block for tokens tokens (the fixed D·H·W of its stage).
func NewTransformerBlock(tokens, hidden, proj, heads int, drop float64, truncNormal bool) (*TransformerBlock, error) {
	epa, err := NewEPA(tokens, hidden, proj, heads, drop, truncNormal)
	if err != nil {
		return nil, err
	}
	return &TransformerBlock{
		Norm:     NewLayerNorm(hidden),
		Gamma:    newParam(torchx.Full([]int64{int64(hidden)}, 1e-6, torchx.Float32, "cpu")),
		EPA:      epa,
		Conv51:   NewResBlock3d(hidden, hidden, [3]int{3, 3, 3}, [3]int{1, 1, 1}, NormBatch),
		Conv8:    NewConv3d(hidden, hidden, [3]int{1, 1, 1}, [3]int{1, 1, 1}, true, false),
		PosEmbed: newParam(torchx.Zeros([]int64{1, int64(tokens), int64(hidden)}, torchx.Float32, "cpu")),
		ConvDrop: 0.1,
		Training: true,
	}, nil
}

// Visit implements Module.
func (t *TransformerBlock) Visit(prefix string, v *Visitor) {
	v.param(prefix, "gamma", &t.Gamma)
	v.param(prefix, "pos_embed", &t.PosEmbed)
	visitChild(prefix, "norm", t.Norm, v)
	visitChild(prefix, "epa_block", t.EPA, v)
	visitChild(prefix, "conv51", t.Conv51, v)
	visitChild(prefix, "conv8.1", t.Conv8, v) // conv8 = Sequential(Dropout3d, Conv3d)
	v.mode(&t.Training)
}

// Forward maps x (B×C×D×H×W) to the same shape.
func (t *TransformerBlock) Forward(x Tensor) Tensor {
	s := x.Shape()
	b, c := s[0], s[1]
	n := s[2] * s[3] * s[4]
	if pn := t.PosEmbed.Shape()[1]; pn != n {
		panic(&torchx.Error{Msg: fmt.Sprintf("UNETR++ block built for %d tokens got %d (%v): the input patch size must match the network's", pn, n, s[2:])})
	}
	return torchx.Tidy(func() Tensor {
		tokens := torchx.Add(torchx.Permute(torchx.Reshape(x, b, c, n), 0, 2, 1), t.PosEmbed)
		attn := torchx.Add(tokens, torchx.Mul(t.Gamma, t.EPA.Forward(t.Norm.Forward(tokens))))
		skip := torchx.Reshape(torchx.Permute(attn, 0, 2, 1), s...)
		out := t.Conv51.Forward(skip)
		return torchx.Add(skip, t.Conv8.Forward(Dropout3d(out, t.ConvDrop, t.Training)))
	})
}

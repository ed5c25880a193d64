package models

import (
	"fmt"

	"github.com/sli2vol/sli2vol/torchx"
)

// UNETRPPConfig sizes a UNETR++ (Shaker et al. 2022). The network is tied to one input
// patch size: positional embeddings and the spatial-attention projections have one entry
// per token of each stage, so whole volumes are predicted by sliding windows.
type UNETRPPConfig struct {
	InChannels, Classes int    // Classes includes the background
	PatchSize           [3]int // input patch (D, H, W); D is the slice axis
	EmbedPatch          [3]int // stem kernel = stride, (2, 4, 4) in the reference
	FeatureSize         int    // channels of the full-resolution conv path (16)
	Dims                [4]int // encoder stage channels (32, 64, 128, 256)
	Depths              [4]int // EPA blocks per encoder stage (3, 3, 3, 3)
	Heads               int    // attention heads (4)
	ProjSize            [4]int // spatial-attention P per encoder stage (64, 64, 64, 32)
	DecoderProjSize     int    // P in the decoder's EPA blocks (64)
	DecoderDepth        int    // EPA blocks per decoder stage (3)
	Dropout             float64
	DeepSupervision     bool
}

// ReferenceJSON is the network's size in the terms of the repo's PyTorch reference
// (bench/pytorch/unetrpp_ref.py), which builds the same module from it.
func (c UNETRPPConfig) ReferenceJSON() map[string]any {
	return map[string]any{
		"in_channels": c.InChannels, "classes": c.Classes, "patch_size": c.PatchSize, "embed_patch": c.EmbedPatch,
		"feature_size": c.FeatureSize, "dims": c.Dims, "depths": c.Depths, "heads": c.Heads,
		"proj_size": c.ProjSize, "decoder_proj_size": c.DecoderProjSize, "decoder_depth": c.DecoderDepth,
		"dropout": c.Dropout, "deep_supervision": c.DeepSupervision,
	}
}

// StageGrid is the token grid of encoder stage i (0..3).
func (c UNETRPPConfig) StageGrid(i int) [3]int {
	var g [3]int
	for a := range 3 {
		g[a] = c.PatchSize[a] / c.EmbedPatch[a] >> i
	}
	return g
}

func (c UNETRPPConfig) tokens(i int) int {
	g := c.StageGrid(i)
	return g[0] * g[1] * g[2]
}

// Validate names the first size that cannot work.
func (c UNETRPPConfig) Validate() error {
	if c.InChannels < 1 || c.Classes < 2 {
		return fmt.Errorf("UNETR++: %d input channels and %d classes (want ≥ 1 and ≥ 2, background included)", c.InChannels, c.Classes)
	}
	for a := range 3 {
		if c.EmbedPatch[a] < 1 || c.PatchSize[a]%(c.EmbedPatch[a]*8) != 0 {
			return fmt.Errorf("UNETR++: patch size %v must be a multiple of 8× the embedding patch %v on every axis", c.PatchSize, c.EmbedPatch)
		}
	}
	if c.FeatureSize < 1 || c.Heads < 1 || c.DecoderDepth < 1 {
		return fmt.Errorf("UNETR++: feature size %d, heads %d and decoder depth %d must be positive", c.FeatureSize, c.Heads, c.DecoderDepth)
	}
	for i := range 4 {
		if c.Dims[i]%c.Heads != 0 || c.Dims[i]%2 != 0 || c.Depths[i] < 1 || c.ProjSize[i] < 1 {
			return fmt.Errorf("UNETR++: stage %d: %d channels must split into %d heads and two halves, with ≥ 1 block and projection (got depth %d, projection %d)",
				i+1, c.Dims[i], c.Heads, c.Depths[i], c.ProjSize[i])
		}
	}
	if c.DecoderProjSize < 1 || c.Dropout < 0 || c.Dropout >= 1 {
		return fmt.Errorf("UNETR++: decoder projection %d and dropout %g out of range", c.DecoderProjSize, c.Dropout)
	}
	return nil
}

// Norm kinds of a residual block (MONAI's "instance" is affine-free, "batch" has running
// statistics).
const (
	NormInstance = "instance"
	NormBatch    = "batch"
)

// ResBlock3d is MONAI's UnetResBlock: two 3×3×3 convs with norm and LeakyReLU(0.01), plus a
// 1×1×1 conv + norm on the residual when the channels or stride change. Convs have no bias.
type ResBlock3d struct {
	Conv1, Conv2, Conv3 *Conv3d
	Norm1, Norm2, Norm3 *BatchNorm // nil with instance norm
	Norm                string
}

// NewResBlock3d builds a block from in to out channels.
func NewResBlock3d(in, out int, kernel, stride [3]int, norm string) *ResBlock3d {
	b := &ResBlock3d{
		Conv1: NewConv3d(in, out, kernel, stride, false, false),
		Conv2: NewConv3d(out, out, kernel, [3]int{1, 1, 1}, false, false),
		Norm:  norm,
	}
	if norm == NormBatch {
		b.Norm1, b.Norm2 = NewBatchNorm3d(out), NewBatchNorm3d(out)
	}
	if in != out || stride != [3]int{1, 1, 1} {
		b.Conv3 = NewConv3d(in, out, [3]int{1, 1, 1}, stride, false, false)
		if norm == NormBatch {
			b.Norm3 = NewBatchNorm3d(out)
		}
	}
	return b
}

// Visit implements Module (MONAI's Convolution wraps each conv as ".conv").
func (b *ResBlock3d) Visit(prefix string, v *Visitor) {
	visitChild(prefix, "conv1.conv", b.Conv1, v)
	visitChild(prefix, "conv2.conv", b.Conv2, v)
	if b.Conv3 != nil {
		visitChild(prefix, "conv3.conv", b.Conv3, v)
	}
	if b.Norm1 != nil {
		visitChild(prefix, "norm1", b.Norm1, v)
		visitChild(prefix, "norm2", b.Norm2, v)
	}
	if b.Norm3 != nil {
		visitChild(prefix, "norm3", b.Norm3, v)
	}
}

func (b *ResBlock3d) norm(bn *BatchNorm, x Tensor) Tensor {
	if bn != nil {
		return bn.Forward(x)
	}
	return torchx.InstanceNorm(x, Tensor{}, Tensor{}, 1e-5)
}

// Forward applies the block.
func (b *ResBlock3d) Forward(x Tensor) Tensor {
	return torchx.Tidy(func() Tensor { // the block's temporaries go at its end (see torchx.Tidy)
		out := torchx.LeakyRelu(b.norm(b.Norm1, b.Conv1.Forward(x)), 0.01)
		out = b.norm(b.Norm2, b.Conv2.Forward(out))
		res := x
		if b.Conv3 != nil {
			res = b.norm(b.Norm3, b.Conv3.Forward(x))
		}
		return torchx.LeakyRelu(torchx.Add(out, res), 0.01)
	})
}

// Downsample is a strided conv (kernel = stride, no bias) followed by a GroupNorm.
type Downsample struct {
	Conv *Conv3d
	Norm *GroupNorm
}

// Visit implements Module ("0.conv", "1": a Sequential of a MONAI Convolution and a norm).
func (d *Downsample) Visit(prefix string, v *Visitor) {
	visitChild(prefix, "0.conv", d.Conv, v)
	visitChild(prefix, "1", d.Norm, v)
}

// Forward applies the layer.
func (d *Downsample) Forward(x Tensor) Tensor { return d.Norm.Forward(d.Conv.Forward(x)) }

// UpBlock is UNETR++'s decoder stage: a transposed conv (kernel = stride), the skip added,
// then EPA blocks (or, at full resolution, a residual conv block).
type UpBlock struct {
	TranspConv *Conv3d
	Blocks     []*TransformerBlock
	Conv       *ResBlock3d // the last decoder only
}

// Visit implements Module.
func (u *UpBlock) Visit(prefix string, v *Visitor) {
	visitChild(prefix, "transp_conv.conv", u.TranspConv, v)
	if u.Conv != nil {
		visitChild(prefix, "decoder_block.0", u.Conv, v)
	}
	for i, b := range u.Blocks {
		visitChild(prefix, fmt.Sprintf("decoder_block.0.%d", i), b, v)
	}
}

// Forward upsamples x and adds skip.
func (u *UpBlock) Forward(x, skip Tensor) Tensor {
	return torchx.Tidy(func() Tensor {
		out := torchx.Add(u.TranspConv.Forward(x), skip)
		if u.Conv != nil {
			return u.Conv.Forward(out)
		}
		for _, b := range u.Blocks {
			out = b.Forward(out)
		}
		return out
	})
}

// UNETRPP is the whole network: a hierarchical EPA encoder on a patch-embedded input, a
// full-resolution residual conv path, four decoder stages and 1×1×1 heads (three with deep
// supervision). Names follow the official synapse model's state_dict.
type UNETRPP struct {
	Config     UNETRPPConfig
	Downsample [4]*Downsample
	Stages     [4][]*TransformerBlock
	Encoder1   *ResBlock3d
	Decoders   [4]*UpBlock // decoder5, decoder4, decoder3, decoder2
	Out        [3]*Conv3d  // out1 (full), out2 (stage 1 grid), out3 (stage 2 grid)
}

// NewUNETRPP builds the network from libtorch's seeded generator.
func NewUNETRPP(c UNETRPPConfig) (*UNETRPP, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &UNETRPP{Config: c}
	one := [3]int{1, 1, 1}
	two := [3]int{2, 2, 2}
	// The stem's GroupNorm has in_channels groups, the others dims[i] groups over dims[i+1]
	// channels (as the reference builds them).
	m.Downsample[0] = &Downsample{NewConv3d(c.InChannels, c.Dims[0], c.EmbedPatch, c.EmbedPatch, false, false), NewGroupNorm(c.InChannels, c.Dims[0])}
	for i := 1; i < 4; i++ {
		m.Downsample[i] = &Downsample{NewConv3d(c.Dims[i-1], c.Dims[i], two, two, false, false), NewGroupNorm(c.Dims[i-1], c.Dims[i])}
	}
	for i := range 4 {
		for range c.Depths[i] {
			b, err := NewTransformerBlock(c.tokens(i), c.Dims[i], c.ProjSize[i], c.Heads, c.Dropout, true)
			if err != nil {
				return nil, err
			}
			m.Stages[i] = append(m.Stages[i], b)
		}
	}
	m.Encoder1 = NewResBlock3d(c.InChannels, c.FeatureSize, [3]int{3, 3, 3}, one, NormInstance)
	// decoder5..3 take stage 3→2, 2→1, 1→0; decoder2 goes to full resolution.
	for d := range 3 {
		from, to := 3-d, 2-d
		u := &UpBlock{TranspConv: NewConv3d(c.Dims[from], c.Dims[to], two, two, false, true)}
		for range c.DecoderDepth {
			b, err := NewTransformerBlock(c.tokens(to), c.Dims[to], c.DecoderProjSize, c.Heads, c.Dropout, false)
			if err != nil {
				return nil, err
			}
			u.Blocks = append(u.Blocks, b)
		}
		m.Decoders[d] = u
	}
	m.Decoders[3] = &UpBlock{
		TranspConv: NewConv3d(c.Dims[0], c.FeatureSize, c.EmbedPatch, c.EmbedPatch, false, true),
		Conv:       NewResBlock3d(c.FeatureSize, c.FeatureSize, [3]int{3, 3, 3}, one, NormInstance),
	}
	m.Out[0] = NewConv3d(c.FeatureSize, c.Classes, one, one, true, false)
	if c.DeepSupervision {
		m.Out[1] = NewConv3d(c.Dims[0], c.Classes, one, one, true, false)
		m.Out[2] = NewConv3d(c.Dims[1], c.Classes, one, one, true, false)
	}
	return m, nil
}

// Visit implements Module.
func (m *UNETRPP) Visit(prefix string, v *Visitor) {
	enc := join(prefix, "unetr_pp_encoder")
	for i := range 4 {
		visitChild(enc, fmt.Sprintf("downsample_layers.%d", i), m.Downsample[i], v)
		for j, b := range m.Stages[i] {
			visitChild(enc, fmt.Sprintf("stages.%d.%d", i, j), b, v)
		}
	}
	visitChild(prefix, "encoder1", m.Encoder1, v)
	for d, name := range []string{"decoder5", "decoder4", "decoder3", "decoder2"} {
		visitChild(prefix, name, m.Decoders[d], v)
	}
	for i, o := range m.Out {
		if o != nil {
			visitChild(prefix, fmt.Sprintf("out%d.conv.conv", i+1), o, v)
		}
	}
}

// Forward maps x (B×C×D×H×W at the configured patch size) to class logits at full
// resolution and, with deep supervision in training, at the stage-1 and stage-2 grids too
// (finest first). Without deep supervision, or when ds is false, one tensor is returned.
func (m *UNETRPP) Forward(x Tensor, ds bool) []Tensor {
	if s := x.Shape(); len(s) != 5 || s[1] != int64(m.Config.InChannels) ||
		s[2] != int64(m.Config.PatchSize[0]) || s[3] != int64(m.Config.PatchSize[1]) || s[4] != int64(m.Config.PatchSize[2]) {
		panic(&torchx.Error{Msg: fmt.Sprintf("UNETR++ input %v: want B×%d×%d×%d×%d", s, m.Config.InChannels,
			m.Config.PatchSize[0], m.Config.PatchSize[1], m.Config.PatchSize[2])})
	}
	return torchx.TidyAll(func() []Tensor { return m.forward(x, ds) })
}

func (m *UNETRPP) forward(x Tensor, ds bool) []Tensor {
	var hidden [4]Tensor
	h := x
	for i := range 4 {
		h = m.Downsample[i].Forward(h)
		for _, b := range m.Stages[i] {
			h = b.Forward(h)
		}
		hidden[i] = h
	}
	conv := m.Encoder1.Forward(x)
	dec3 := m.Decoders[0].Forward(hidden[3], hidden[2])
	dec2 := m.Decoders[1].Forward(dec3, hidden[1])
	dec1 := m.Decoders[2].Forward(dec2, hidden[0])
	out := m.Decoders[3].Forward(dec1, conv)
	logits := []Tensor{m.Out[0].Forward(out)}
	if ds && m.Out[1] != nil {
		logits = append(logits, m.Out[1].Forward(dec1), m.Out[2].Forward(dec2))
	}
	return logits
}

// SetChannelDropout sets the Dropout3d rate of every block's conv tail (0.1 as built).
func (m *UNETRPP) SetChannelDropout(p float64) {
	for _, st := range m.Stages {
		for _, b := range st {
			b.ConvDrop = p
		}
	}
	for _, d := range m.Decoders {
		for _, b := range d.Blocks {
			b.ConvDrop = p
		}
	}
}

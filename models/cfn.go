package models

import (
	"fmt"

	"github.com/sli2vol/sli2vol/torchx"
)

// Bottleneck turns a one-channel slice (or mask) into the encoder's input channels.
type Bottleneck interface {
	Forward(x Tensor) Tensor
	Channels() int
}

// CFN is a correspondence flow network. With a pseudo-label stream (PL) it is Sli2Vol+'s
// OEG-CFN (§3.2, Fig. 1b): GEIG inputs, and one shared-weight encoder applied to slices and to
// their pseudo-labels, whose features are concatenated into the key (slice j) and the query
// (slice j+1). Without, it is Sli2Vol's CFN: edge-profile inputs and slice features only. The
// affinity is the softmax over a (2R+1)² window of key·query (Eq. 2) and carries slice j (or a
// mask) to slice j+1 (Eq. 4).
type CFN struct {
	PL        bool // Sli2Vol+'s OEG-CFN (pseudo-label stream); false: Sli2Vol's CFN
	Radius    int
	Input     Bottleneck
	Encoder   *Encoder
	PLEncoder *Encoder // only with SeparatePLEncoder (the published code's ablation)
}

// CFNConfig sizes a correspondence-flow network.
type CFNConfig struct {
	// PL selects Sli2Vol+'s OEG-CFN (GEIG inputs, features of pseudo-labels beside those of
	// slices); false selects Sli2Vol's CFN (edge-profile inputs, slice features only).
	PL                bool
	Width             int   // encoder widths w, 2w, 4w, 8w
	Stages            int   // encoder stages
	BlocksPerStage    int   // residual blocks per stage
	FeatureDim        int   // encoder output channels
	Radius            int   // affinity window (2R+1)²
	EdgeRadius        int   // Sli2Vol's edge profile window (without PL)
	GEIGDirections    int   // GEIG's filter directions (with PL)
	GEIGScales        []int // GEIG's filter scales (with PL)
	SeparatePLEncoder bool  // a second encoder for pseudo-labels (with PL)
}

// NewCFN builds the network c describes, with fresh weights.
func NewCFN(c CFNConfig) (*CFN, error) {
	if c.Radius <= 0 || c.Width <= 0 || c.Stages <= 0 || c.BlocksPerStage <= 0 || c.FeatureDim <= 0 {
		return nil, fmt.Errorf("cfn: radius %d, width %d, stages %d, blocks per stage %d and feature dim %d must be positive",
			c.Radius, c.Width, c.Stages, c.BlocksPerStage, c.FeatureDim)
	}
	m := &CFN{PL: c.PL, Radius: c.Radius}
	if c.PL {
		m.Input = NewGEIG(c.GEIGDirections, c.GEIGScales)
	} else {
		m.Input = NewEdgeProfile(c.EdgeRadius)
	}
	ec := EncoderConfig{InChannels: m.Input.Channels(), Width: c.Width, Stages: c.Stages,
		BlocksPerStage: c.BlocksPerStage, FeatureDim: c.FeatureDim}
	m.Encoder = NewEncoder(ec)
	if c.SeparatePLEncoder && c.PL {
		m.PLEncoder = NewEncoder(ec)
	}
	return m, nil
}

// UsesPL reports whether training feeds pseudo-labels.
func (m *CFN) UsesPL() bool { return m.PL }

// Visit implements Module: encoder.*, pl_encoder.*.
func (m *CFN) Visit(prefix string, v *Visitor) {
	visitChild(prefix, "encoder", m.Encoder, v)
	if m.PLEncoder != nil {
		visitChild(prefix, "pl_encoder", m.PLEncoder, v)
	}
}

// SliceFeatures encodes slices B×1×H×W → B×F×H×W (the test-time key/query, §3.4).
func (m *CFN) SliceFeatures(s Tensor) Tensor { return m.Encoder.Forward(m.Input.Forward(s)) }

// PLFeatures encodes pseudo-label masks with the shared (or the separate) encoder.
func (m *CFN) PLFeatures(pl Tensor) Tensor {
	e := m.Encoder
	if m.PLEncoder != nil {
		e = m.PLEncoder
	}
	return e.Forward(m.Input.Forward(pl))
}

// Affinity is Eq. 2: softmax over the window of query·key, B×(2R+1)²×H×W, for every pixel u
// of the query slice over the pixels v = u + d of the key slice.
//
// Under mixed precision the features arrive in bf16/fp16; the logits are sums over all
// feature channels and the softmax is sharp, so the affinity is computed in float32.
func (m *CFN) Affinity(query, key Tensor) Tensor {
	return torchx.Softmax(torchx.Correlation(float32Of(query), float32Of(key), m.Radius), 1)
}

func float32Of(t Tensor) Tensor {
	if torchx.DTypeOf(t) == torchx.Float32 {
		return t
	}
	return torchx.To(t, "", torchx.Float32)
}

// Propagate is Eq. 4: carries src (B×C×H×W, an image or one-hot mask of the key slice)
// to the query slice.
func (m *CFN) Propagate(affinity, src Tensor) Tensor {
	return torchx.Aggregate(affinity, src, m.Radius)
}

// Reconstruct is the training forward pass: the reconstruction of slice j+1 from slice j
// through their affinity. plJ, plJ1 are the pseudo-labels (ignored without a PL stream). With a
// shared encoder the four inputs go through it as one batch.
func (m *CFN) Reconstruct(sJ, sJ1, plJ, plJ1 Tensor) Tensor {
	return torchx.Tidy(func() Tensor { return m.reconstruct(sJ, sJ1, plJ, plJ1) })
}

func (m *CFN) reconstruct(sJ, sJ1, plJ, plJ1 Tensor) Tensor {
	var key, query Tensor
	if !m.UsesPL() {
		f := m.SliceFeatures(torchx.Cat([]Tensor{sJ, sJ1}, 0))
		b := sJ.Shape()[0]
		key, query = torchx.Narrow(f, 0, 0, b), torchx.Narrow(f, 0, b, b)
	} else {
		b := sJ.Shape()[0]
		var fs, fp Tensor
		if m.PLEncoder == nil {
			f := m.SliceFeatures(torchx.Cat([]Tensor{sJ, sJ1, plJ, plJ1}, 0))
			fs, fp = torchx.Narrow(f, 0, 0, 2*b), torchx.Narrow(f, 0, 2*b, 2*b)
		} else {
			fs = m.SliceFeatures(torchx.Cat([]Tensor{sJ, sJ1}, 0))
			fp = m.PLFeatures(torchx.Cat([]Tensor{plJ, plJ1}, 0))
		}
		key = torchx.Cat([]Tensor{torchx.Narrow(fs, 0, 0, b), torchx.Narrow(fp, 0, 0, b)}, 1)
		query = torchx.Cat([]Tensor{torchx.Narrow(fs, 0, b, b), torchx.Narrow(fp, 0, b, b)}, 1)
	}
	return m.Propagate(m.Affinity(query, key), sJ)
}

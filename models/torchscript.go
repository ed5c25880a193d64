package models

import (
	"fmt"
	"strings"

	"github.com/sli2vol/sli2vol/torchx"
)

// TorchScript export: one test-time propagation step (§3.4) as a self-contained TorchScript
// module — forward(slice_a, slice_b, mask_a) -> mask_b with slices B×1×H×W in [0,1] (already
// windowed) and masks B×K×H×W (one-hot or probabilities): the bottleneck (GEIG or edge
// profile), the encoder, the local affinity (Eq. 2) and the propagation (Eq. 4). The source is
// generated from the Go modules, so the exported network is the trained one, layer by layer.

func tsName(n string) string { return strings.ReplaceAll(n, ".", "__") }

func convLine(b *strings.Builder, out, in, prefix string, c *Conv2d) {
	bias := "None"
	if c.Bias.T != nil {
		bias = "self." + tsName(prefix+".bias")
	}
	fmt.Fprintf(b, "        %s = torch.conv2d(%s, self.%s, %s, [%d, %d], [%d, %d], [1, 1], 1)\n",
		out, in, tsName(prefix+".weight"), bias, c.Stride, c.Stride, c.Pad, c.Pad)
}

func bnLine(b *strings.Builder, v, prefix string, n *BatchNorm) {
	p := func(s string) string { return "self." + tsName(prefix+"."+s) }
	fmt.Fprintf(b, "        %s = torch.batch_norm(%s, %s, %s, %s, %s, False, %g, %g, True)\n",
		v, v, p("weight"), p("bias"), p("running_mean"), p("running_var"), n.Momentum, n.Eps)
}

// ExportTorchScript writes m's test-time step as a TorchScript module; scale is
// data.intensity_scale (the slices are multiplied by it, as in training).
func ExportTorchScript(m *CFN, scale float64, path string) error {
	var f *fixedFilter
	geig := false
	switch in := m.Input.(type) {
	case *GEIG:
		f, geig = in.filter, true
	case *EdgeProfile:
		f = in.filter
	default:
		return fmt.Errorf("torchscript: unknown bottleneck %T", m.Input)
	}
	tensors := map[string]torchx.Tensor{"input_kernel": f.kernel("cpu")}
	params := map[string]bool{}
	m.Encoder.Visit("encoder", &Visitor{Tensor: func(name string, t *Tensor, buffer bool) {
		if strings.HasSuffix(name, "num_batches_tracked") {
			return
		}
		tensors[tsName(name)] = *t
		params[tsName(name)] = !buffer
	}})
	var b strings.Builder
	bottleneckSource(&b, f, geig)
	encoderSource(&b, m.Encoder)
	fmt.Fprintf(&b, `
def forward(self, slice_a, slice_b, mask_a):
        R = %d
        fa = self.encode(self.bottleneck(slice_a * %g))
        fb = self.encode(self.bottleneck(slice_b * %g))
        H = fa.size(2)
        W = fa.size(3)
        kp = torch.constant_pad_nd(fa, [R, R, R, R], 0.0)
        logits = []
        for dy in range(2 * R + 1):
            for dx in range(2 * R + 1):
                logits.append((fb * kp[:, :, dy:dy + H, dx:dx + W]).sum(1))
        A = torch.softmax(torch.stack(logits, 1), 1)
        mp = torch.constant_pad_nd(mask_a, [R, R, R, R], 0.0)
        out = torch.zeros_like(mask_a)
        d = 0
        for dy in range(2 * R + 1):
            for dx in range(2 * R + 1):
                out = out + A[:, d:d + 1] * mp[:, :, dy:dy + H, dx:dx + W]
                d += 1
        return out
`, m.Radius, scale, scale)
	return torchx.SaveTorchScript(path, tensors, params, b.String())
}

// bottleneckSource writes the TorchScript bottleneck: the fixed filter bank f with
// replicated borders, softmax over its responses (and the slice itself for GEIG).
func bottleneckSource(b *strings.Builder, f *fixedFilter, geig bool) {
	b.WriteString("def bottleneck(self, x):\n")
	fmt.Fprintf(b, "        r = %d\n", f.reach)
	b.WriteString(`        h = x.size(2)
        w = x.size(3)
        ri = torch.clamp(torch.arange(-r, h + r, device=x.device), 0, h - 1)
        ci = torch.clamp(torch.arange(-r, w + r, device=x.device), 0, w - 1)
        xp = x.index_select(2, ri).index_select(3, ci)
        d = torch.conv2d(xp, self.input_kernel, None, [1, 1], [0, 0], [1, 1], 1)
`)
	if geig {
		b.WriteString("        return torch.cat([torch.softmax(d, 1), x], 1)\n")
	} else {
		b.WriteString("        return torch.softmax(d, 1)\n")
	}
}

// encoderSource writes the TorchScript encoder, layer by layer from e.
func encoderSource(b *strings.Builder, e *Encoder) {
	b.WriteString("\ndef encode(self, x):\n")
	convLine(b, "h", "x", "encoder.conv1", e.Conv1)
	bnLine(b, "h", "encoder.bn1", e.BN1)
	b.WriteString("        h = torch.relu(h)\n")
	for s, blocks := range e.Layers {
		for j, blk := range blocks {
			p := fmt.Sprintf("encoder.layer%d.%d", s+1, j)
			convLine(b, "y", "h", p+".conv1", blk.Conv1)
			bnLine(b, "y", p+".bn1", blk.BN1)
			b.WriteString("        y = torch.relu(y)\n")
			convLine(b, "y", "y", p+".conv2", blk.Conv2)
			bnLine(b, "y", p+".bn2", blk.BN2)
			if blk.Down != nil {
				convLine(b, "s", "h", p+".downsample.0", blk.Down)
				bnLine(b, "s", p+".downsample.1", blk.DownB)
				b.WriteString("        h = torch.relu(y + s)\n")
			} else {
				b.WriteString("        h = torch.relu(y + h)\n")
			}
		}
	}
	convLine(b, "h", "h", "encoder.conv_out", e.Out)
	b.WriteString("        return h\n")
}

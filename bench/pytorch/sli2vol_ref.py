"""PyTorch reference of sli2vol's correspondence-flow models, written from the Sli2Vol+ paper
(§3.2-3.4), independently of the Go code: GEIG and the edge profile by explicit shifts (Go: one
fixed-kernel convolution), the local affinity by F.unfold (Go: a displacement loop in C++).

Used (1) by the Go tests to check that a Go-saved state dict reproduces Go's outputs here and
(2) by the benchmarks as the PyTorch side of the comparison. Parameter names match Go's.

    python3 sli2vol_ref.py parity CONFIG.json WEIGHTS.pt INPUTS.pt OUT.pt
"""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def geig_offsets(directions, r):
    """Direction i at scale r as (dy, dx): angle i*180/d, larger component scaled to r."""
    out = []
    for i in range(directions):
        th = i * math.pi / directions
        uy, ux = -math.sin(th), math.cos(th)
        m = max(abs(uy), abs(ux))
        out.append((int(round(r * uy / m)), int(round(r * ux / m))))
    return out


def shifted(xp, reach, dy, dx, h, w):
    """I(p + (dy, dx)) for every p, from x padded by `reach` on each side."""
    return xp[:, :, reach + dy:reach + dy + h, reach + dx:reach + dx + w]


class GEIG(nn.Module):
    def __init__(self, directions, scales):
        super().__init__()
        self.directions, self.scales = directions, list(scales)

    def second_derivatives(self, x):
        reach = max(max(abs(a), abs(b)) for r in self.scales for a, b in geig_offsets(self.directions, r))
        h, w = x.shape[-2:]
        xp = F.pad(x, (reach,) * 4, mode="replicate")
        chans = []
        for i in range(self.directions):
            for r in self.scales:
                dy, dx = geig_offsets(self.directions, r)[i]
                chans.append(shifted(xp, reach, dy, dx, h, w) + shifted(xp, reach, -dy, -dx, h, w) - 2 * x)
        return torch.cat(chans, 1)

    def forward(self, x):
        return torch.cat([torch.softmax(self.second_derivatives(x), 1), x], 1)

    def channels(self):
        return self.directions * len(self.scales) + 1


class EdgeProfile(nn.Module):
    def __init__(self, radius):
        super().__init__()
        self.radius = radius

    def forward(self, x):
        r = self.radius
        h, w = x.shape[-2:]
        xp = F.pad(x, (r,) * 4, mode="replicate")
        chans = [x - shifted(xp, r, dy, dx, h, w)
                 for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
        return torch.softmax(torch.cat(chans, 1), 1)

    def channels(self):
        return (2 * self.radius + 1) ** 2 - 1


class BasicBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class Encoder(nn.Module):
    """ResNet-18-style encoder at the slice's own resolution (stride 1 everywhere)."""

    def __init__(self, cin, width, stages, blocks, feature_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 7, 1, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        c = width
        for s in range(stages):
            out = width << s
            layer = []
            for _ in range(blocks):
                layer.append(BasicBlock(c, out))
                c = out
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layer))
        self.stages = stages
        self.conv_out = nn.Conv2d(c, feature_dim, 3, 1, 1, bias=True)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.stages):
            h = getattr(self, "layer%d" % (s + 1))(h)
        return self.conv_out(h)


def local_correlation(q, k, radius):
    """Eq. 2 logits: for each pixel u of q, <q(u), k(u+d)> over the (2R+1)^2 window, zero outside."""
    b, c, h, w = q.shape
    s = 2 * radius + 1
    kw = F.unfold(k, s, padding=radius).view(b, c, s * s, h, w)
    return (q.unsqueeze(2) * kw).sum(1)


def local_aggregate(a, m, radius):
    """Eq. 4: out(u) = sum_d A(u, d) m(u+d), zero outside."""
    b, c, h, w = m.shape
    s = 2 * radius + 1
    mw = F.unfold(m, s, padding=radius).view(b, c, s * s, h, w)
    return (a.unsqueeze(1) * mw).sum(2)


class CFN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        # "pl" (Go's models.CFNConfig) or the run config's model.mode: the OEG-CFN has a PL stream.
        self.pl, self.radius = cfg.get("pl", cfg.get("mode") == "sli2vol+"), cfg["radius"]
        if self.pl:
            self.input = GEIG(cfg["geig"]["directions"], cfg["geig"]["scales"])
        else:
            self.input = EdgeProfile(cfg["edge_radius"])
        args = (self.input.channels(), cfg["width"], cfg["stages"], cfg["blocks_per_stage"], cfg["feature_dim"])
        self.encoder = Encoder(*args)
        self.pl_encoder = Encoder(*args) if (cfg.get("separate_pl_encoder") and self.pl) else None

    def slice_features(self, s):
        return self.encoder(self.input(s))

    def pl_features(self, pl):
        e = self.pl_encoder if self.pl_encoder is not None else self.encoder
        return e(self.input(pl))

    def affinity(self, query, key):
        return torch.softmax(local_correlation(query, key, self.radius), 1)

    def reconstruct(self, s_j, s_j1, pl_j=None, pl_j1=None):
        b = s_j.shape[0]
        if not self.pl:
            f = self.slice_features(torch.cat([s_j, s_j1], 0))
            key, query = f[:b], f[b:]
        else:
            if self.pl_encoder is None:  # shared weights: one batched pass
                f = self.slice_features(torch.cat([s_j, s_j1, pl_j, pl_j1], 0))
                fs, fp = f[:2 * b], f[2 * b:]
            else:
                fs = self.slice_features(torch.cat([s_j, s_j1], 0))
                fp = self.pl_features(torch.cat([pl_j, pl_j1], 0))
            key = torch.cat([fs[:b], fp[:b]], 1)
            query = torch.cat([fs[b:], fp[b:]], 1)
        return local_aggregate(self.affinity(query, key), s_j, self.radius)


def parity(cfg_path, weights_path, inputs_path, out_path):
    cfg = json.load(open(cfg_path))
    torch.set_num_threads(1)
    model = CFN(cfg).double()
    sd = torch.load(weights_path)
    model.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    x = {k: v.double() for k, v in torch.load(inputs_path).items()}
    out = {}
    with torch.no_grad():
        model.eval()
        out["recon_eval"] = model.reconstruct(x["s_j"], x["s_j1"], x.get("pl_j"), x.get("pl_j1"))
        out["features_eval"] = model.slice_features(x["s_j"])
        model.train()
        out["recon_train"] = model.reconstruct(x["s_j"], x["s_j1"], x.get("pl_j"), x.get("pl_j1"))
    torch.save({k: v.float() for k, v in out.items()}, out_path)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "parity":
        parity(*sys.argv[2:])
    else:
        sys.exit(__doc__)

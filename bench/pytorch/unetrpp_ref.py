"""PyTorch reference of UNETR++ (Shaker et al. 2022), written from the paper and the facts of
the official model (module names, paired attention, stem and decoder layout), in plain torch
without MONAI or timm, independently of the Go code. Parameter names match the official
synapse model's state_dict, which is what Go writes.

Used by the Go tests (a Go-saved state dict must reproduce Go's outputs here) and by the
benchmarks (the PyTorch side of the UNETR++ training-step row).

    python3 unetrpp_ref.py parity CONFIG.json WEIGHTS.pt INPUTS.pt OUT.pt
    python3 unetrpp_ref.py count CONFIG.json      (prints {"params": N})
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv(nn.Module):
    """MONAI's Convolution with conv_only=True: the conv sits under the name "conv"."""

    def __init__(self, cin, cout, k, s, bias=False, transposed=False):
        super().__init__()
        k, s = tuple(k), tuple(s)
        if transposed:
            self.conv = nn.ConvTranspose3d(cin, cout, k, s, bias=bias)
        else:
            pad = tuple((a - b + 1) // 2 for a, b in zip(k, s))
            self.conv = nn.Conv3d(cin, cout, k, s, padding=pad, bias=bias)

    def forward(self, x):
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, norm):
        super().__init__()
        self.conv1 = Conv(cin, cout, (3, 3, 3), (1, 1, 1))
        self.conv2 = Conv(cout, cout, (3, 3, 3), (1, 1, 1))
        mk = (lambda: nn.BatchNorm3d(cout)) if norm == "batch" else (lambda: nn.InstanceNorm3d(cout))
        self.norm1, self.norm2 = mk(), mk()
        if cin != cout:
            self.conv3 = Conv(cin, cout, (1, 1, 1), (1, 1, 1))
            self.norm3 = mk()

    def forward(self, x):
        out = F.leaky_relu(self.norm1(self.conv1(x)), 0.01)
        out = self.norm2(self.conv2(out))
        res = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        return F.leaky_relu(out + res, 0.01)


class EPA(nn.Module):
    def __init__(self, tokens, hidden, proj, heads, drop):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.temperature2 = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkvv = nn.Linear(hidden, 4 * hidden, bias=False)
        self.E = self.F = nn.Linear(tokens, proj)
        self.drop = nn.Dropout(drop)
        self.out_proj = nn.Linear(hidden, hidden // 2)
        self.out_proj2 = nn.Linear(hidden, hidden // 2)

    def forward(self, x):
        b, n, c = x.shape
        h, d = self.heads, c // self.heads
        q, k, v_ca, v_sa = self.qkvv(x).view(b, n, 4, h, d).unbind(2)  # each (b, n, h, d)
        q, k, v_ca, v_sa = (t.permute(0, 2, 3, 1) for t in (q, k, v_ca, v_sa))  # (b, h, d, n)
        k_proj, v_proj = self.E(k), self.F(v_sa)  # (b, h, d, p)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        a_ca = self.drop(torch.softmax(torch.einsum("bhin,bhjn->bhij", q, k) * self.temperature, -1))
        x_ca = torch.einsum("bhij,bhjn->bnhi", a_ca, v_ca).reshape(b, n, c)
        a_sa = self.drop(torch.softmax(torch.einsum("bhdn,bhdp->bhnp", q, k_proj) * self.temperature2, -1))
        # (b, h, n, d) laid out as (b, d, h, n) and read as (b, n, c): the official layout.
        x_sa = torch.einsum("bhnp,bhdp->bdhn", a_sa, v_proj).reshape(b, n, c)
        return torch.cat([self.out_proj(x_sa), self.out_proj2(x_ca)], -1)


class TransformerBlock(nn.Module):
    def __init__(self, tokens, hidden, proj, heads, drop):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.gamma = nn.Parameter(1e-6 * torch.ones(hidden))
        self.epa_block = EPA(tokens, hidden, proj, heads, drop)
        self.conv51 = ResBlock(hidden, hidden, "batch")
        self.conv8 = nn.Sequential(nn.Dropout3d(0.1), nn.Conv3d(hidden, hidden, 1))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, hidden))

    def forward(self, x):
        b, c = x.shape[:2]
        t = x.flatten(2).transpose(1, 2) + self.pos_embed
        t = t + self.gamma * self.epa_block(self.norm(t))
        skip = t.transpose(1, 2).reshape(x.shape)
        return skip + self.conv8(self.conv51(skip))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dims, grid = cfg["dims"], [p // e for p, e in zip(cfg["patch_size"], cfg["embed_patch"])]
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            Conv(cfg["in_channels"], dims[0], cfg["embed_patch"], cfg["embed_patch"]),
            nn.GroupNorm(cfg["in_channels"], dims[0]))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                Conv(dims[i], dims[i + 1], (2, 2, 2), (2, 2, 2)), nn.GroupNorm(dims[i], dims[i + 1])))
        self.stages = nn.ModuleList()
        for i in range(4):
            tokens = (grid[0] >> i) * (grid[1] >> i) * (grid[2] >> i)
            self.stages.append(nn.Sequential(*[
                TransformerBlock(tokens, dims[i], cfg["proj_size"][i], cfg["heads"], cfg["dropout"])
                for _ in range(cfg["depths"][i])]))

    def forward(self, x):
        hidden = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            hidden.append(x)
        return hidden


class UpBlock(nn.Module):
    def __init__(self, cin, cout, up, tokens, cfg, conv_decoder=False):
        super().__init__()
        self.transp_conv = Conv(cin, cout, up, up, transposed=True)
        if conv_decoder:
            self.decoder_block = nn.ModuleList([ResBlock(cout, cout, "instance")])
        else:
            self.decoder_block = nn.ModuleList([nn.Sequential(*[
                TransformerBlock(tokens, cout, cfg["decoder_proj_size"], cfg["heads"], cfg["dropout"])
                for _ in range(cfg["decoder_depth"])])])

    def forward(self, x, skip):
        return self.decoder_block[0](self.transp_conv(x) + skip)


class UNETRPP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dims, fs, k = cfg["dims"], cfg["feature_size"], cfg["classes"]
        grid = [p // e for p, e in zip(cfg["patch_size"], cfg["embed_patch"])]
        tok = lambda i: (grid[0] >> i) * (grid[1] >> i) * (grid[2] >> i)
        self.unetr_pp_encoder = Encoder(cfg)
        self.encoder1 = ResBlock(cfg["in_channels"], fs, "instance")
        self.decoder5 = UpBlock(dims[3], dims[2], (2, 2, 2), tok(2), cfg)
        self.decoder4 = UpBlock(dims[2], dims[1], (2, 2, 2), tok(1), cfg)
        self.decoder3 = UpBlock(dims[1], dims[0], (2, 2, 2), tok(0), cfg)
        self.decoder2 = UpBlock(dims[0], fs, cfg["embed_patch"], 0, cfg, conv_decoder=True)
        self.out1 = nn.Module()
        self.out1.conv = Conv(fs, k, (1, 1, 1), (1, 1, 1), bias=True)
        self.ds = cfg["deep_supervision"]
        if self.ds:
            self.out2, self.out3 = nn.Module(), nn.Module()
            self.out2.conv = Conv(dims[0], k, (1, 1, 1), (1, 1, 1), bias=True)
            self.out3.conv = Conv(dims[1], k, (1, 1, 1), (1, 1, 1), bias=True)

    def forward(self, x):
        e1, e2, e3, e4 = self.unetr_pp_encoder(x)
        conv = self.encoder1(x)
        d3 = self.decoder5(e4, e3)
        d2 = self.decoder4(d3, e2)
        d1 = self.decoder3(d2, e1)
        out = [self.out1.conv(self.decoder2(d1, conv))]
        if self.ds and self.training:
            out += [self.out2.conv(d1), self.out3.conv(d2)]
        return out


def dice_ce(logits, target, known):
    """nnU-Net's Dice + CE (batch Dice, background excluded, smooth 1e-5) over known voxels;
    1 − Dice, as sli2vol logs it."""
    k = logits.shape[1]
    ce = F.cross_entropy(logits, torch.where(known[:, 0] > 0.5, target, torch.full_like(target, -100)), ignore_index=-100)
    p = torch.softmax(logits, 1) * known
    y = F.one_hot(target, k).permute(0, 4, 1, 2, 3).to(logits.dtype) * known
    axes = (0, 2, 3, 4)
    tp = (p * y).sum(axes)
    fp, fn = p.sum(axes) - tp, y.sum(axes) - tp
    dc = (2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)
    return ce + 1 - dc[1:].mean()


def deep_supervision_loss(outs, target, known, embed):
    """Weights 1, 1/2, 1/4 normalised; targets by nearest neighbour at each output's grid."""
    w = [1 / 2 ** i for i in range(len(outs))]
    total = 0
    for i, o in enumerate(outs):
        t, kn = target, known
        if i > 0:
            f = [e * 2 ** (i - 1) for e in embed]
            t = target[:, ::f[0], ::f[1], ::f[2]]
            kn = known[:, :, ::f[0], ::f[1], ::f[2]]
        total = total + w[i] / sum(w) * dice_ce(o, t, kn)
    return total


def parity(cfg_path, weights_path, inputs_path, out_path):
    """Loads Go's state dict; writes the network's outputs and one EPA block's output."""
    cfg = json.load(open(cfg_path))
    net = UNETRPP(cfg)
    sd = torch.load(weights_path)
    net.load_state_dict(sd, strict=True)
    inputs = torch.load(inputs_path)
    out = {}
    with torch.no_grad():
        net.eval()
        epa = net.unetr_pp_encoder.stages[0][0].epa_block
        out["epa"] = epa(inputs["tokens"])
        out["block"] = net.unetr_pp_encoder.stages[0][0](inputs["stage0"])
        for i, o in enumerate(net(inputs["x"])):
            out["eval%d" % i] = o
    # Training mode without dropout: batch statistics and deep supervision heads.
    net.train()
    for m in net.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout3d)):
            m.p = 0.0
    logits = net(inputs["x"])
    for i, o in enumerate(logits):
        out["train%d" % i] = o.detach()
    sum(l.square().mean() for l in logits).backward()
    out["grad_qkvv"] = net.unetr_pp_encoder.stages[0][0].epa_block.qkvv.weight.grad
    out["grad_stem"] = net.unetr_pp_encoder.downsample_layers[0][0].conv.weight.grad
    torch.save(out, out_path)
    n_params = sum(p.numel() for p in net.parameters())
    print(json.dumps({"params": n_params}))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "parity":
        parity(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "count":
        net = UNETRPP(json.load(open(sys.argv[2])))
        print(json.dumps({"params": sum(p.numel() for p in net.parameters())}))
    else:
        sys.exit(__doc__)

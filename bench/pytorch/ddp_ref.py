"""PyTorch's DistributedDataParallel on the repo's reference CFN and UNETR++: the data-parallel
training that sli2vol's Go trainer must reproduce (train/ddp_test.go, bench/ddp_test.go).
Launched by torchrun:

    python3 -m torch.distributed.run --nproc_per_node 2 ddp_ref.py DIR
    python3 -m torch.distributed.run --nproc_per_node 2 ddp_ref.py unetr DIR

The UNETR++ mode reads bench's prepared unetr.json, weights.pt and batch.pt (rank r trains
on its equal part of the batch), takes one step (loss, clipping and optimizer as the spec
says, dropout off) and writes py_unetr_rank{rank}.pt.

DIR holds spec.json (the model config, lr, weight decay, steps, intensity scale), weights.pt
(the initial weights) and batches.pt (each rank's batch of each step: r{rank}_s{step}_{a,b,
pla,plb}); each rank writes py_rank{rank}.pt, its parameters and buffers after the steps.
"""
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sli2vol_ref import CFN  # noqa: E402


class Reconstruct(torch.nn.Module):
    """The training forward pass as a module's forward, which DDP wraps."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, a, b, pla, plb):
        return self.m.reconstruct(a, b, pla, plb)


def main(d):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    spec = json.load(open(os.path.join(d, "spec.json")))
    m = CFN(spec["model"])
    m.load_state_dict(torch.load(os.path.join(d, "weights.pt")), strict=True)
    m.train()
    ddp = torch.nn.parallel.DistributedDataParallel(Reconstruct(m))
    opt = torch.optim.AdamW(ddp.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    batches = torch.load(os.path.join(d, "batches.pt"))
    scale = spec["intensity_scale"]
    for s in range(spec["steps"]):
        x = {k: batches[f"r{rank}_s{s}_{k}"] * scale for k in ("a", "b", "pla", "plb")}
        opt.zero_grad()
        loss = F.smooth_l1_loss(ddp(x["a"], x["b"], x["pla"], x["plb"]), x["b"])
        loss.backward()
        opt.step()
    torch.save(m.state_dict(), os.path.join(d, f"py_rank{rank}.pt"))
    dist.destroy_process_group()


def unetr(d):
    from unetrpp_ref import UNETRPP, deep_supervision_loss
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    spec = json.load(open(os.path.join(d, "unetr.json")))
    m = UNETRPP(spec["net"])
    m.load_state_dict(torch.load(os.path.join(d, "weights.pt")), strict=True)
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout3d)):
            mod.p = 0.0
    m.train()
    ddp = torch.nn.parallel.DistributedDataParallel(m)
    if spec["optimizer"] == "adamw":
        opt = torch.optim.AdamW(ddp.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    else:
        opt = torch.optim.SGD(ddp.parameters(), lr=spec["lr"], momentum=spec["momentum"],
                              weight_decay=spec["weight_decay"], nesterov=spec["nesterov"])
    b = torch.load(os.path.join(d, "batch.pt"))
    per = b["image"].shape[0] // world
    x = {k: v[rank * per:(rank + 1) * per] for k, v in b.items()}
    opt.zero_grad()
    loss = deep_supervision_loss(ddp(x["image"]), x["labels"], x["known"], spec["net"]["embed_patch"])
    loss.backward()
    if spec["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), spec["grad_clip"])
    opt.step()
    torch.save(m.state_dict(), os.path.join(d, f"py_unetr_rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "unetr":
        unetr(sys.argv[2])
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(__doc__)

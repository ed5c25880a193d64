"""PyTorch's DistributedDataParallel on the repo's reference CFN: the data-parallel training
that sli2vol's Go trainer must reproduce (train/ddp_test.go). Launched by torchrun:

    python3 -m torch.distributed.run --nproc_per_node 2 ddp_ref.py DIR

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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

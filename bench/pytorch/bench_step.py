"""Times one OEG-CFN AdamW training step of the PyTorch reference (same architecture and
sizes as Go's BenchmarkCFNTrainStep): batch 4, 256² on CUDA (96² on CPU), paper config."""
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from sli2vol_ref import CFN  # noqa: E402

CFG = {"mode": "sli2vol+", "radius": 6, "width": 16, "stages": 4, "blocks_per_stage": 2,
       "feature_dim": 64, "edge_radius": 3, "separate_pl_encoder": False,
       "geig": {"directions": 4, "scales": [1, 2, 3]}}


def main():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    hw = 256 if dev == "cuda" else 96
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    torch.manual_seed(0)
    m = CFN(CFG).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.005)
    x = lambda: torch.rand(4, 1, hw, hw, device=dev)
    s_j, s_j1, pl_j, pl_j1 = x(), x(), x().round(), x().round()

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.smooth_l1_loss(m.reconstruct(s_j, s_j1, pl_j, pl_j1), s_j1)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else 0
    print(f"pytorch {torch.__version__} {dev} {hw}²: {dt / steps * 1000:.1f} ms/step, "
          f"{4 * steps / dt:.1f} samples/s, peak GPU memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()

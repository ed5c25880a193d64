"""PyTorch side of `make bench` (bench/run.sh): the same timings as sli2vol-bench on the same
spec, weights and batch (written by `sli2vol-bench prepare`), with the repo's reference model.

    python3 bench.py train DIR DEVICE STEPS THREADS
    python3 bench.py propagate DIR DEVICE THREADS
    python3 bench.py train-unetr DIR DEVICE STEPS THREADS
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sli2vol_ref import CFN, local_aggregate  # noqa: E402


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(d, device):
    spec = json.load(open(os.path.join(d, "spec.json")))
    m = CFN(spec["model"])
    m.load_state_dict(torch.load(os.path.join(d, "weights.pt")))
    return spec, m.to(device)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step, steps, device, batch):
    """One untimed step (its loss is the parity figure), then steps timed ones; steps < 0
    times the first step alone (as sli2vol-bench does). Prints the result line."""
    t0 = time.perf_counter()
    first = step()
    sync(device)
    if steps < 0:
        print(json.dumps({"first_loss": first, "peak_rss_mib": peak_rss_mib(), "steps": 1,
                          "samples_per_s": batch / (time.perf_counter() - t0)}))
        return
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = time.perf_counter() - t0
    out = {"first_loss": first, "peak_rss_mib": peak_rss_mib(), "steps": steps}
    if steps:
        out["samples_per_s"] = steps * batch / dt
    if os.environ.get("SLI2VOL_BENCH_OPS"):
        out["ops"] = count_ops(step)
    if os.environ.get("SLI2VOL_BENCH_OPS") == "time":
        out.update(profile_ops(step, 10, device))
    print(json.dumps(out))


def profile_ops(fn, steps, device):
    """sli2vol-bench's ops_time: per operator, dispatches and host time (µs) per step of its
    outermost events on the stepping thread and on others, over `steps` more steps. Host
    events only (RecordFunction's, as the Go and C++ sides see): on a GPU the profiler also
    lists kernels, which are left out."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    sync(device)
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            fn()
        sync(device)
    ms = (time.perf_counter() - t0) * 1e3 / steps
    cpu = getattr(torch.autograd, "DeviceType", None)
    evs = sorted((e for e in prof.events() if cpu is None or getattr(e, "device_type", cpu.CPU) == cpu.CPU),
                 key=lambda e: e.time_range.start)
    me = evs[0].thread if evs else None  # the profiler's thread ids are its own: the first event is the caller's
    ops = {}
    for e in evs:
        o = ops.setdefault(e.name, {"count": 0.0, "caller_us": 0.0, "other_us": 0.0})
        o["count"] += 1 / steps
        if e.cpu_parent is None:
            o["caller_us" if e.thread == me else "other_us"] += e.cpu_time_total / steps
    return {"profiled_steps": steps, "profiled_step_ms": ms, "ops_time": ops}


def count_ops(fn):
    """ATen operators one more step dispatches, by name (the RecordFunction events that
    sli2vol-bench counts on its side), without the profiler's own Python-level entries."""
    from collections import Counter
    with torch.autograd.profiler.profile() as prof:
        fn()
    return dict(Counter(e.name for e in prof.function_events))


def train(d, device, steps, threads):
    torch.set_num_threads(threads)
    spec, m = load(d, device)
    m.train()
    b = {k: v.to(device) * spec["intensity_scale"] for k, v in torch.load(os.path.join(d, "batch.pt")).items()}
    # sli2vol's defaults: AdamW lr 1e-4, weight decay 0.005, smooth-L1 reconstruction loss.
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.005)

    def step():
        opt.zero_grad()
        loss = F.smooth_l1_loss(m.reconstruct(b["s_j"], b["s_j1"], b["pl_j"], b["pl_j1"]), b["s_j1"])
        loss.backward()
        opt.step()
        return loss.item()

    time_steps(step, steps, device, b["s_j"].shape[0])


def propagate(d, device, threads):
    import numpy as np
    torch.set_num_threads(threads)
    spec, m = load(d, device)
    m.eval()
    # .npy copies of volume.nii.gz / labels.nii.gz (index [i, j, k] = voxel (i, j, k)): numpy
    # alone reads them, so a device machine needs no nibabel.
    img = np.load(os.path.join(d, "volume.npy")).astype(np.float32)
    lab = np.load(os.path.join(d, "labels.npy")).astype(np.int64)
    lo, up = spec["window"]
    vol = (np.clip(img, lo, up) - lo) / (up - lo) * spec["intensity_scale"]
    n_sl = vol.shape[2]  # phantoms: slice axis 2, rows along array axis 0, columns along 1
    ann = n_sl // 2
    ids = sorted(int(v) for v in np.unique(lab[:, :, ann]) if v != 0)
    chan = {0: 0, **{v: i + 1 for i, v in enumerate(ids)}}
    k = len(ids) + 1
    out = np.zeros_like(lab)
    out[:, :, ann] = lab[:, :, ann]

    def sl(n):
        return torch.from_numpy(np.ascontiguousarray(vol[:, :, n]))[None, None].to(device)

    def onehot(mask):
        idx = torch.from_numpy(np.vectorize(chan.get)(mask))
        return F.one_hot(idx, k).permute(2, 0, 1)[None].float().to(device)

    def run():
        first = last = ann
        with torch.no_grad():
            for step in (-1, 1):
                cur = onehot(lab[:, :, ann])
                key = m.slice_features(sl(ann))
                n = ann + step
                while 0 <= n < n_sl:
                    query = m.slice_features(sl(n))
                    probs = local_aggregate(m.affinity(query, key), cur, m.radius)
                    arg = probs.argmax(1)[0].cpu().numpy()
                    if (arg > 0).sum() < 1:
                        break
                    mask = np.zeros_like(arg)
                    for v, c in chan.items():
                        if c > 0:
                            mask[arg == c] = v
                    out[:, :, n] = mask
                    first, last = min(first, n), max(last, n)
                    cur = onehot(mask)
                    key = query
                    n += step
        return first, last

    t0 = time.perf_counter()
    first, last = run()
    sync(device)
    dt = time.perf_counter() - t0
    res = {"first_loss": 0, "slices_per_s": (last - first) / dt, "labelled": int((out != 0).sum()),
           "peak_rss_mib": peak_rss_mib()}
    if os.environ.get("SLI2VOL_BENCH_OPS"):  # a second propagation, counted
        res["ops"] = count_ops(run)
    print(json.dumps(res))


def train_unetr(d, device, steps, threads):
    from unetrpp_ref import UNETRPP, deep_supervision_loss
    torch.set_num_threads(threads)
    spec = json.load(open(os.path.join(d, "unetr.json")))
    m = UNETRPP(spec["net"])
    m.load_state_dict(torch.load(os.path.join(d, "weights.pt")))
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout3d)):
            mod.p = 0.0
    m = m.to(device).train()
    b = {k: v.to(device) for k, v in torch.load(os.path.join(d, "batch.pt")).items()}
    if spec["optimizer"] == "adamw":
        opt = torch.optim.AdamW(m.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    else:
        opt = torch.optim.SGD(m.parameters(), lr=spec["lr"], momentum=spec["momentum"],
                              weight_decay=spec["weight_decay"], nesterov=spec["nesterov"])

    def step():
        opt.zero_grad()
        loss = deep_supervision_loss(m(b["image"]), b["labels"], b["known"], spec["net"]["embed_patch"])
        first = loss.item()
        loss.backward()
        if spec["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), spec["grad_clip"])
        opt.step()
        return first

    time_steps(step, steps, device, b["image"].shape[0])


if __name__ == "__main__":
    a = sys.argv
    if len(a) == 6 and a[1] == "train":
        train(a[2], a[3], int(a[4]), int(a[5]))
    elif len(a) == 6 and a[1] == "train-unetr":
        train_unetr(a[2], a[3], int(a[4]), int(a[5]))
    elif len(a) == 5 and a[1] == "propagate":
        propagate(a[2], a[3], int(a[4]))
    else:
        sys.exit(__doc__)

"""Sets two sides' profiled training steps beside each other (SLI2VOL_BENCH_OPS=time: the
ops_time of sli2vol-bench's, cfn_step's or bench.py's JSON line): wall time per step, the
stepping thread's time inside libtorch and outside it, and the operators whose host time
differs most.

    python3 bench/hosttime.py A.json B.json [N]
"""
import json
import sys


def load(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"{path}: no JSON result line")
    d = json.loads(lines[-1])
    if "ops_time" not in d:
        sys.exit(f"{path}: no ops_time (run with SLI2VOL_BENCH_OPS=time)")
    return d


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    print(f"{'ms per step':<34}{'A':>10}{'B':>10}{'A-B':>10}")
    for label, f in [("wall", lambda d: d["profiled_step_ms"]),
                     ("caller thread inside libtorch", lambda d: sum(v["caller_us"] for v in d["ops_time"].values()) / 1e3),
                     ("caller thread outside libtorch", lambda d: d["profiled_step_ms"] - sum(v["caller_us"] for v in d["ops_time"].values()) / 1e3),
                     ("other threads inside libtorch", lambda d: sum(v["other_us"] for v in d["ops_time"].values()) / 1e3)]:
        x, y = f(a), f(b)
        print(f"{label:<34}{x:>10.2f}{y:>10.2f}{x - y:>10.2f}")
    zero = {"count": 0, "caller_us": 0, "other_us": 0}
    rows = []
    for k in set(a["ops_time"]) | set(b["ops_time"]):
        x, y = a["ops_time"].get(k, zero), b["ops_time"].get(k, zero)
        tx, ty = x["caller_us"] + x["other_us"], y["caller_us"] + y["other_us"]
        rows.append((tx - ty, k, x["count"], y["count"], tx, ty))
    rows.sort(key=lambda r: -abs(r[0]))
    print(f"\n{'operator (outermost host µs per step)':<56}{'n A':>7}{'n B':>7}{'µs A':>10}{'µs B':>10}{'A-B':>9}")
    for d, k, ca, cb, tx, ty in rows[:n]:
        print(f"{k[:55]:<56}{ca:>7.1f}{cb:>7.1f}{tx:>10.0f}{ty:>10.0f}{d:>9.0f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Runs on a machine with CUDA, g++ and a PyTorch package but no Go: builds our two shim
# libraries against that PyTorch's libtorch (bin/ with sli2vol and the test binaries, and
# build/cgotorch-src come along, built where Go is: `make testbin`) and runs the checks,
# writing logs under $OUT (default ./out).
#
#   device-run.sh          everything: tests, benchmarks, a phantom pipeline, propagation speed
#   device-run.sh bench    the build and `make bench`'s rows on CUDA only (BENCH_TIMEOUT s, 540)
#   device-run.sh probe    the 96² step: Go, C++ and PyTorch timed and profiled, then rows
#   device-run.sh paper-model  #23: configs/paper.yaml's Sli2Vol trained on the bundle's real CT
#                          (make gpu-bundle GPU_DATA=1) for ~5 minutes; the run comes back
#   device-run.sh propagate  chunked vs per-slice propagation on CUDA: the equality tests and
#                          the propagate rows (100×256², 300×512²; Go, Go per-slice, PyTorch)
set -uo pipefail
script_start=$(date +%s)
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export SLI2VOL_PYTHON=$(command -v "$PY")
{
  echo "== machine"; uname -m; g++ --version | head -n1; (nvcc --version | tail -n1) 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  echo "profilers: $(command -v nsys ncu 2>/dev/null | tr '\n' ' ')"
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch.compiled_with_cxx11_abi())'
} 2>&1 | tee "$OUT/env.txt"
TORCH=$($PY -c 'import torch, os; print(os.path.dirname(torch.__file__))')
echo "== build against $TORCH"
third_party/libtorch-flags.sh --describe "$TORCH"
start=$(date +%s)
rm -rf build/obj build/lib # whatever was built elsewhere, against another libtorch
make -k -j"$(nproc)" native LIBTORCH="$TORCH" >"$OUT/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "dist\.cc" "$OUT/build.log"; then
  # torch.distributed's C++ API moves between PyTorch releases: the rest still runs without it.
  echo "torchx/csrc/dist.cc did not build against this PyTorch (see build.log): retrying without torch.distributed"
  make -k -j"$(nproc)" native LIBTORCH="$TORCH" EXTRA_CXXFLAGS=-DTX_NO_DIST >>"$OUT/build.log" 2>&1
  rc=$?
fi
echo "build rc $rc in $(( $(date +%s) - start )) s"
grep -E "error|Error" "$OUT/build.log" | head -n 60
[ $rc -eq 0 ] || exit $rc
# The plain C++ step (the bench's ceiling column) is optional: without it the rows still run.
CPP_FLAG=""
if make -j"$(nproc)" build/bench/cfn_step LIBTORCH="$TORCH" >>"$OUT/build.log" 2>&1; then
  CPP_FLAG="--cpp build/bench/cfn_step"
else
  echo "cfn_step did not build (see build.log): the C++ column is left out"
fi
echo "== version"; bin/sli2vol version 2>&1
DEV=${BENCH_DEVICE:-cuda} # cpu: a dry run of this script's bench mode on a machine without a GPU
cuda_bench() { # the interleaved Go/PyTorch rows; the report is rewritten after each row
  echo "== make bench --device $DEV (Go vs PyTorch, interleaved rounds) ${BENCH_ONLY:+rows $BENCH_ONLY}"
  timeout "${BENCH_TIMEOUT:-540}" build/bench/sli2vol-bench run --device "$DEV" --rounds 5 --out "$OUT/BENCHMARKS-cuda.md" \
    ${BENCH_ONLY:+--only "$BENCH_ONLY"} $CPP_FLAG >"$OUT/bench-cuda.log" 2>&1 || echo "make bench on $DEV failed or timed out (rc $?)"
  tail -n 40 "$OUT/bench-cuda.log"
}
if [ "${1:-}" = paper-model ]; then
  DEV=$DEV OUT=$OUT third_party/gpu/paper-model.sh
  exit $?
fi
if [ "${1:-}" = propagate ]; then
  # #19 on the GPU: chunked propagation equals the per-slice path, then its speed (slices/s,
  # peak GPU memory) against the per-slice path and PyTorch at 100×256² and 300×512².
  (cd infer && timeout 240 ../bin/infer.test -test.v -test.run 'ChunkedEquals' 2>&1) |
    tee "$OUT/infer-cuda-tests.txt" | grep -E "^(--- |ok|FAIL|PASS)|cuda/.*differ" | tail -n 40
  left=$(( ${DEVICE_SECONDS:-590} - ($(date +%s) - script_start) - 10 ))
  BENCH_ONLY=${BENCH_ONLY-propagate,propagate-512} BENCH_TIMEOUT=$left cuda_bench
  exit 0
fi
if [ "${1:-}" = probe ]; then
  # Where the Go side's 96² step time goes, beside the plain C++ step and PyTorch: the three
  # interleaved (PROBE_ROUNDS, 2), then each side's step profiled (per operator host time on
  # the stepping thread, bench/hosttime.py), a Go CPU profile, and
  # the rows in BENCH_ONLY (train-96; PROBE_ROWS=0: none) with what is left. Few files: a
  # device run returns few.
  (cd torchx && timeout 60 ../bin/torchx.test -test.v -test.run 'StagedUploadsCUDA|FromDataOn' 2>&1) | grep -E "^(--- |ok|FAIL|PASS)"
  B=build/bench/sli2vol-bench
  W=build/bench/ablation
  steps=${ABLATION_STEPS:-40}
  $B prepare $W/train-96 "${PROBE_CONFIG:-configs/paper.yaml}" "${PROBE_HW:-96}" 4 0 >/dev/null || echo "prepare failed"
  side() { # name → command
    case $1 in
      go) echo "$B train" ;;
      cpp) echo "build/bench/cfn_step" ;;
      pytorch) echo "$PY bench/pytorch/bench.py train" ;;
    esac
  }
  {
    for r in $(seq "${PROBE_ROUNDS:-2}"); do
      for v in go cpp pytorch; do
        echo "round $r $v: $(timeout 60 $(side $v) $W/train-96 "$DEV" "$steps" "$(nproc)" 2>&1 | tail -n 1 | grep -o '"samples_per_s": *[0-9.]*')"
      done
    done
    mkdir -p /tmp/host
    for v in go cpp pytorch; do
      SLI2VOL_BENCH_OPS=time timeout 90 $(side $v) $W/train-96 "$DEV" "${HOST_STEPS:-20}" "$(nproc)" >/tmp/host/$v.json 2>&1
    done
    echo "== host time per step, Go (A) vs C++ (B)"; $PY bench/hosttime.py /tmp/host/go.json /tmp/host/cpp.json 30 2>&1
    echo "== host time per step, Go (A) vs PyTorch (B)"; $PY bench/hosttime.py /tmp/host/go.json /tmp/host/pytorch.json 30 2>&1
    tar -czf "$OUT/host.tgz" -C /tmp host
  } 2>&1 | tee "$OUT/probe.txt"
  # Where the Go host thread spends a step (go tool pprof -top go-96.pprof; no binary needed).
  SLI2VOL_BENCH_CPUPROFILE=$OUT/go-96.pprof timeout 60 $B train $W/train-96 "$DEV" "${PPROF_STEPS:-100}" "$(nproc)" | tail -n 1 | cut -c1-100
  left=$(( ${DEVICE_SECONDS:-590} - ($(date +%s) - script_start) - 10 ))
  [ "${PROBE_ROWS:-1}" = 0 ] || BENCH_ONLY=${BENCH_ONLY-train-96} BENCH_TIMEOUT=$left cuda_bench
  exit 0
fi
if [ "${1:-}" = bench ]; then
  # The CUDA checks (affinity, optimizers, staged uploads), the affinity strategies alone at
  # 96² and 256², one change at a time on the 96² step with both sides' operator counts,
  # then the rows with what is left of a 10-minute device command.
  (cd torchx && timeout 90 ../bin/torchx.test -test.v -test.run 'CUDA' 2>&1) |
    tee "$OUT/torchx-cuda-tests.txt" | grep -E "^(--- |ok|FAIL|PASS)|max |upload"
  (cd torchx && timeout 90 ../bin/torchx.test -test.run '^$' -test.bench Affinity -test.benchtime 3x 2>&1) |
    tee "$OUT/bench-affinity.txt" | grep -E "Benchmark|FAIL|rror"
  echo "== one change at a time: the 96² batch-4 training step, 20 steps (samples/s); operator counts of one more step"
  B=build/bench/sli2vol-bench
  W=build/bench/ablation
  $B prepare $W/train-96 configs/paper.yaml 96 4 0 || echo "prepare failed"
  steps=${ABLATION_STEPS:-20} # fewer for a dry run on a CPU
  for aff in auto unfold; do
    ops=""
    [ $aff = auto ] && ops=1
    SLI2VOL_BENCH_OPS=$ops SLI2VOL_BENCH_AFFINITY=$aff timeout 60 $B train $W/train-96 "$DEV" "$steps" "$(nproc)" >"$OUT/ablation-go-$aff.json" 2>&1
    echo "go affinity=$aff: $(tail -n 1 "$OUT/ablation-go-$aff.json" | cut -c1-160)"
  done | tee "$OUT/ablation.txt"
  SLI2VOL_BENCH_OPS=1 timeout 60 $PY bench/pytorch/bench.py train $W/train-96 "$DEV" "$steps" "$(nproc)" >"$OUT/ablation-pytorch.json" 2>&1
  echo "pytorch: $(tail -n 1 "$OUT/ablation-pytorch.json" | cut -c1-160)" | tee -a "$OUT/ablation.txt"
  echo "== propagation through 100 slices of 256², operator counts of a second run"
  $B prepare $W/propagate configs/paper.yaml "${ABLATION_HW:-256}" 2 "${ABLATION_SLICES:-100}" || echo "prepare failed"
  SLI2VOL_BENCH_OPS=1 timeout 60 $B propagate $W/propagate "$DEV" "$(nproc)" >"$OUT/ops-propagate-go.json" 2>&1
  SLI2VOL_BENCH_OPS=1 timeout 60 $PY bench/pytorch/bench.py propagate $W/propagate "$DEV" "$(nproc)" >"$OUT/ops-propagate-pytorch.json" 2>&1
  for side in go pytorch; do echo "$side: $(tail -n 1 "$OUT/ops-propagate-$side.json" | cut -c1-120)"; done
  # Where Nsight Systems is installed, 70 s are kept for a kernel-level profile of both sides'
  # 96² step (GPU time per kernel, CUDA API calls); the rows get the rest.
  NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/*/bin/nsys 2>/dev/null | head -n 1)
  keep=0
  [ -n "$NSYS" ] && keep=70
  left=$(( ${DEVICE_SECONDS:-590} - ($(date +%s) - script_start) - 10 - keep ))
  BENCH_ONLY=${BENCH_ONLY-train-96,train-256,propagate,64×128×128,16×32×32,memory} BENCH_TIMEOUT=$left cuda_bench
  if [ -n "$NSYS" ]; then
    echo "== nsys ($NSYS): the 96² step, 10 steps each side"
    timeout 32 "$NSYS" profile -o /tmp/nsys-go -f true -t cuda --stats=true $B train $W/train-96 "$DEV" 10 "$(nproc)" >"$OUT/nsys-go.txt" 2>&1
    timeout 32 "$NSYS" profile -o /tmp/nsys-py -f true -t cuda --stats=true $PY bench/pytorch/bench.py train $W/train-96 "$DEV" 10 "$(nproc)" >"$OUT/nsys-pytorch.txt" 2>&1
    grep -A12 "cuda_gpu_kern_sum\|cuda_api_sum" "$OUT/nsys-go.txt" | head -n 30
  fi
  exit 0
fi
echo "== selftest cuda"; bin/sli2vol selftest --device cuda --steps 30 2>&1 | tail -n1
run_tests() { # package, extra args
  local pkg=$1; shift
  [ -x bin/$pkg.test ] || return 0
  echo "== $pkg tests"
  (cd $pkg && timeout 300 ../bin/$pkg.test "$@" 2>&1) | tee "$OUT/$pkg-tests.txt" | grep -E "^(--- |ok|FAIL|PASS)|max |samples/s|ns/op"
}
run_tests torchx -test.v
run_tests models -test.v
run_tests infer -test.v -test.run 'ChunkedEquals|TwoAnnotations|Identity|Shift'
echo "== benchmarks (Go)"
(cd torchx && ../bin/torchx.test -test.run '^$' -test.bench Affinity -test.benchtime 5x 2>&1) | tee "$OUT/bench-affinity.txt" | grep -E "Benchmark"
(cd models && ../bin/models.test -test.run '^$' -test.bench CFNTrainStep -test.benchtime 10x 2>&1) | tee "$OUT/bench-step.txt" | grep -E "Benchmark"
echo "== benchmark (PyTorch reference)"
$PY bench/pytorch/bench_step.py 10 2>&1 | tee "$OUT/bench-step-pytorch.txt"
BENCH_TIMEOUT=${BENCH_TIMEOUT:-420} cuda_bench
echo "== pipeline on phantoms (CUDA, configs/gpu-phantom.yaml)"
( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.5; done ) > "$OUT/gpu-mem.txt" 2>/dev/null &
MON=$!
D=build/gpu-demo; rm -rf $D; mkdir -p $D
C=configs/gpu-phantom.yaml
S=bin/sli2vol
t0=$(date +%s.%N)
$S phantom --out $D/train --cases 4 --seed 1 --size 128,128,64 >/dev/null
$S phantom --out $D/test --cases 2 --seed 2 --size 128,128,64 >/dev/null
$S train --config $C --mode sli2vol --data $D/train --out $D/s2v 2>&1 | tail -n 2
$S pseudo-label --config $C --model $D/s2v --data $D/train --out $D/pl 2>&1 | tail -n 1
$S train --config $C --mode sli2vol+ --data $D/train --pseudo $D/pl --out $D/s2vp 2>&1 | tail -n 2
ts=$(date +%s.%N)
$S evaluate --config $C --model $D/s2v --model $D/s2vp --data $D/test --out $D/report 2>&1 | tee "$OUT/gpu-report.txt"
te=$(date +%s.%N)
kill $MON 2>/dev/null
echo "pipeline wall $(awk "BEGIN{print $te-$t0}") s, evaluate $(awk "BEGIN{print $te-$ts}") s; peak GPU memory used $(sort -n "$OUT/gpu-mem.txt" | tail -n1) MiB"
cp $D/report/report.md "$OUT/gpu-report.md" 2>/dev/null
grep -h '"step"' $D/s2vp/metrics.jsonl | tail -n 3
echo "== propagation speed: 256×256×100 phantom, paper network"
$S phantom --out $D/big --cases 1 --seed 9 --size 256,256,100 >/dev/null
for dev in cuda cpu; do
  t0=$(date +%s.%N)
  $S segment --device $dev --model $D/s2vp --image $D/big/imagesTr/phantom_000.nii.gz \
     --annotation $D/big/labelsTr/phantom_000.nii.gz --slice 50 --out $D/big-$dev.nii.gz --min-area 1 2>/dev/null
  t1=$(date +%s.%N)
  echo "segment on $dev: $(awk "BEGIN{print $t1-$t0}") s for up to 99 propagated 256² slices (process start and I/O included)"
done

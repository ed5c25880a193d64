#!/usr/bin/env bash
# Runs on a machine with CUDA, g++ and a PyTorch package but no Go: builds our two shim
# libraries against that PyTorch's libtorch (bin/ with sli2vol and the test binaries, and
# build/cgotorch-src come along, built where Go is: `make testbin`) and runs the checks,
# writing logs under $OUT (default ./out).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export SLI2VOL_PYTHON=$(command -v "$PY")
{
  echo "== machine"; uname -m; g++ --version | head -n1; (nvcc --version | tail -n1) 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch.compiled_with_cxx11_abi())'
} 2>&1 | tee "$OUT/env.txt"
TORCH=$($PY -c 'import torch, os; print(os.path.dirname(torch.__file__))')
echo "== build against $TORCH"
third_party/libtorch-flags.sh --describe "$TORCH"
start=$(date +%s)
make -k -j"$(nproc)" native LIBTORCH="$TORCH" >"$OUT/build.log" 2>&1
rc=$?
echo "build rc $rc in $(( $(date +%s) - start )) s"
grep -E "error|Error" "$OUT/build.log" | head -n 60
[ $rc -eq 0 ] || exit $rc
echo "== version"; bin/sli2vol version 2>&1 | tee "$OUT/version.txt"
echo "== selftest cuda"; bin/sli2vol selftest --device cuda --steps 30 2>&1 | tail -n1
run_tests() { # package, extra args
  local pkg=$1; shift
  [ -x bin/$pkg.test ] || return 0
  echo "== $pkg tests"
  (cd $pkg && timeout 300 ../bin/$pkg.test "$@" 2>&1) | tee "$OUT/$pkg-tests.txt" | grep -E "^(--- |ok|FAIL|PASS)|max |samples/s|ns/op"
}
run_tests torchx -test.v
run_tests models -test.v
echo "== benchmarks (Go)"
(cd torchx && ../bin/torchx.test -test.run '^$' -test.bench Affinity -test.benchtime 5x 2>&1) | tee "$OUT/bench-affinity.txt" | grep -E "Benchmark"
(cd models && ../bin/models.test -test.run '^$' -test.bench CFNTrainStep -test.benchtime 10x 2>&1) | tee "$OUT/bench-step.txt" | grep -E "Benchmark"
echo "== benchmark (PyTorch reference)"
$PY bench/pytorch/bench_step.py 10 2>&1 | tee "$OUT/bench-step-pytorch.txt"

#!/usr/bin/env bash
# Runs on a machine with CUDA, g++ and a PyTorch package but no Go: builds our two shim
# libraries against that PyTorch's libtorch (bin/sli2vol and build/cgotorch-src come along,
# built where Go is) and runs the checks, writing logs under $OUT (default ./out).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
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
readelf -d bin/sli2vol | grep NEEDED
echo "== version"; bin/sli2vol version 2>&1 | tee "$OUT/version.txt"
echo "== selftest cuda"; bin/sli2vol selftest --device cuda --steps 50 2>&1 | tee "$OUT/selftest-cuda.txt"
echo "== selftest cpu"; bin/sli2vol selftest --device cpu --steps 10 2>&1 | tail -n1

#!/usr/bin/env bash
# Checks a gpu-bundle's build path on this machine: Debian's libtorch is presented as a single
# LIBTORCH root (include/ and lib/ symlinked), the bundle builds its two libraries with its own
# Makefile (no Go involved), and the bundle's sli2vol runs against them.
set -euo pipefail
src=$(cd "${1:?usage: test-bundle.sh BUNDLE}" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# A copy: libraries built here against Debian's libtorch must not travel in the bundle itself.
cp -r "$src" "$root/bundle"
bundle=$root/bundle
mkdir -p "$root/torch"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
ln -s /usr/include "$root/torch/include"
ln -s "/usr/lib/$multiarch" "$root/torch/lib"
make -C "$bundle" -j"$(nproc)" native build/bench/cfn_step LIBTORCH="$root/torch" GO=false >/dev/null
("$bundle/build/bench/cfn_step" 2>&1 || true) | grep -q "usage: cfn_step" || { echo "test-bundle: the bundle's cfn_step does not run" >&2; exit 1; }
out=$("$bundle/bin/sli2vol" version)
echo "$out"
echo "$out" | grep -q "^libtorch 1\.13" || { echo "test-bundle: sli2vol version from the bundle failed" >&2; exit 1; }
# The bundle's binary must resolve our libraries inside the bundle, not this checkout's.
lib=$(ldd "$bundle/bin/sli2vol" | awk '/libtorchx.so/ {print $3}')
case "$lib" in
  "$bundle"/*) echo "test-bundle: ok (libtorchx from $lib)" ;;
  *) echo "test-bundle: the bundle's sli2vol loads $lib, not the bundle's own" >&2; exit 1 ;;
esac
# The benchmark binary (build/bench/, so that it finds configs/ and bench/pytorch/ two levels
# up) loads the bundle's libraries too and answers with its usage.
lib=$(ldd "$bundle/build/bench/sli2vol-bench" | awk '/libtorchx.so/ {print $3}')
case "$lib" in
  "$bundle"/*) ;;
  *) echo "test-bundle: the bundle's sli2vol-bench loads $lib, not the bundle's own" >&2; exit 1 ;;
esac
usage=$("$bundle/build/bench/sli2vol-bench" 2>&1 || true)
if echo "$usage" | grep -q "usage: prepare"; then
  echo "test-bundle: sli2vol-bench ok"
else
  echo "test-bundle: the bundle's sli2vol-bench does not run" >&2; exit 1
fi

#!/usr/bin/env bash
# Installs what sli2vol's build and tests need on Debian, skipping what is there.
# With a LIBTORCH argument the product's libtorch is that one and no libtorch is installed;
# the compiler and the interop-test Python packages are still checked.
set -euo pipefail
libtorch=${1:-}
# libopenjp2-7-dev: JPEG 2000 DICOM frames (linked statically into sli2vol).
want=(g++ make libopenjp2-7-dev)
# libgloo-dev: the headers of Gloo, the CPU backend of libtorch's torch.distributed, which
# Debian's libtorch-dev includes but does not ship.
[ -z "$libtorch" ] && want+=(libtorch-dev libgloo-dev)
# Interop tests and the PyTorch comparison only; never used by the product.
want+=(python3-torch python3-nibabel)
# The browser test of `sli2vol serve`'s page (cmd/sli2vol/browser_test.go, skipped without a
# Chromium): headless Chromium with its own SwiftShader for WebGL; fonts-liberation so the
# screenshot it writes has legible text (a Recommends that --no-install-recommends skips).
want+=(chromium fonts-liberation)
if [ -n "$libtorch" ]; then
  # Another libtorch (e.g. a CUDA one): install nothing, only check what the build needs.
  [ -d "$libtorch/include" ] && [ -d "$libtorch/lib" ] || {
    echo "deps: LIBTORCH=$libtorch has no include/ and lib/" >&2; exit 1; }
  for tool in g++ make; do
    command -v $tool >/dev/null || { echo "deps: $tool not found (LIBTORCH set: installing nothing)" >&2; exit 1; }
  done
  echo "deps: using libtorch at $libtorch; nothing installed"
  exit 0
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all present (${want[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

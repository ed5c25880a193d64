#!/usr/bin/env bash
# Prints the compiler or linker flags for one libtorch installation.
#   libtorch-flags.sh --cxxflags|--ldflags|--libdir|--describe [LIBTORCH]
# With no LIBTORCH (or an empty one) it describes Debian's libtorch-dev layout.
# The C++ ABI flag is asked of the libtorch itself (its TorchConfig.cmake), because pip
# wheels were built with the old ABI up to 2.x and with the new one later; CUDA is on when
# libtorch_cuda is present.
set -euo pipefail
what=${1:?usage: libtorch-flags.sh --cxxflags|--ldflags|--libdir|--describe [LIBTORCH]}
root=${2:-}

if [ -z "$root" ]; then
  multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  inc="-isystem /usr/include/torch/csrc/api/include"
  libdir=/usr/lib/$multiarch
  cmake=$libdir/cmake/Torch/TorchConfig.cmake
else
  [ -d "$root/include" ] && [ -d "$root/lib" ] || {
    echo "libtorch-flags: LIBTORCH=$root has no include/ and lib/" >&2; exit 1; }
  inc="-isystem $root/include -isystem $root/include/torch/csrc/api/include"
  # A root whose include/ is the system's (/usr/include) must not be -isystem'd: that breaks
  # libstdc++'s #include_next of the C headers.
  [ "$(realpath "$root/include")" = /usr/include ] && inc="-isystem $root/include/torch/csrc/api/include"
  libdir=$root/lib
  cmake=$(ls "$root"/share/cmake/Torch/TorchConfig.cmake "$root"/lib/cmake/Torch/TorchConfig.cmake 2>/dev/null | head -n1 || true)
fi

abi=1
if [ -n "${cmake:-}" ] && [ -f "$cmake" ]; then
  found=$(grep -o '_GLIBCXX_USE_CXX11_ABI=[01]' "$cmake" | head -n1 | cut -d= -f2 || true)
  [ -n "$found" ] && abi=$found
fi

cuda=0
[ -e "$libdir/libtorch_cuda.so" ] && cuda=1

# CUDA headers (cuda_runtime_api.h), needed by c10/cuda and ATen/cuda: the toolkit's, or the
# ones pip installs beside torch (site-packages/nvidia/*/include).
cuda_inc=""
if [ $cuda = 1 ]; then
  for d in "${CUDA_HOME:-/usr/local/cuda}/include" "$root"/../nvidia/cuda_runtime/include \
           "$root"/../nvidia/cu*/include; do
    [ -f "$d/cuda_runtime_api.h" ] && { cuda_inc="$cuda_inc -isystem $(cd "$d" && pwd)"; break; }
  done
  # NCCL's header, for torch.distributed's NCCL process group (torchx/csrc/dist.cc): the
  # toolkit's, or the nvidia-nccl wheel's beside torch. Without it, dist.cc builds Gloo only.
  for d in "${CUDA_HOME:-/usr/local/cuda}/include" /usr/include "$root"/../nvidia/nccl/include; do
    [ -f "$d/nccl.h" ] && { cuda_inc="$cuda_inc -isystem $(cd "$d" && pwd)"; break; }
  done
fi

case "$what" in
  --cxxflags)
    flags="$inc -D_GLIBCXX_USE_CXX11_ABI=$abi"
    [ $cuda = 1 ] && flags="$flags -DTORCHX_WITH_CUDA=1$cuda_inc"
    echo "$flags" ;;
  --ldflags)
    # --no-as-needed: libtorch_cuda registers its kernels when loaded, so it must stay
    # in NEEDED even though no symbol of it is referenced directly.
    libs="-L$libdir -Wl,-rpath,$libdir -Wl,--no-as-needed -lc10 -ltorch -ltorch_cpu"
    [ $cuda = 1 ] && libs="$libs -ltorch_cuda -lc10_cuda"
    echo "$libs -Wl,--as-needed" ;;
  --libdir) echo "$libdir" ;;
  --describe) echo "libtorch at ${root:-Debian system} (lib $libdir, cxx11 abi $abi, cuda $cuda)" ;;
  *) echo "libtorch-flags: unknown option $what" >&2; exit 2 ;;
esac

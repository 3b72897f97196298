#!/usr/bin/env bash
# The GPU path, checked on a machine without a GPU (`make check-cuda`):
#   1. builds ddad_fast._C with its CUDA part against a CUDA build of torch (TORCH_CUDA_ARCH_LIST
#      left to setup.py, which picks 9.0+PTX where no GPU is visible), then checks that both L1 ops
#      have CUDA kernels, that the .so holds sm_90 machine code, and every CUDA kernel's registers
#      and local memory (fails on any: a spill);
#   2. compiles every Triton bn_stats kernel variant the launcher picks for a ResNet-34's 36 BN
#      inputs ahead of time for sm_90, with the triton that torch pins and with CHECK_TRITON_OLD
#      (the GPU image's), and tables them (fails on any spill);
#   3. traces the fast backend's student and generator loss functions for ResNet-34 -> ResNet-18
#      on fake CUDA tensors under bf16 autocast (fails on a graph break).
# The venv with the CUDA torch (5 GB) lives under CHECK_CUDA_CACHE, outside the checkout, and is
# reused while its torch is CHECK_TORCH; the sources are built from a copy there too, so the
# checkout's own CPU build is never touched. Tables go to stdout and to $CHECK_CUDA_OUT/*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_version=${CHECK_TORCH:-2.14.1}
old_triton=${CHECK_TRITON_OLD:-3.6.0}
cache=${CHECK_CUDA_CACHE:-$HOME/.cache/ddad_fast}
venv=$cache/cuda-venv
src=$cache/src
triton_old_dir=$cache/triton-$old_triton
out=${CHECK_CUDA_OUT:-$cache/report}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-13.0}
export PATH=$CUDA_HOME/bin:$PATH
export MAX_JOBS=${MAX_JOBS:-2}

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

[ -x "$CUDA_HOME/bin/nvcc" ] || { echo "check-cuda: no nvcc under CUDA_HOME=$CUDA_HOME" >&2; exit 2; }

step "sources copied to $src (the checkout's files, tracked and untracked, not ignored)"
mkdir -p "$src"
find "$src" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$src"
ln -s ../kernels "$src/ddad_fast/kernels"  # where the installed package has them
export PYTHONPATH=$src

step "venv with torch==$torch_version (CUDA build) under $venv"
have=$(cat "$venv/ready" 2>/dev/null || true)  # written once the venv is complete
if [ "$have" != "$torch_version" ]; then
  echo "making it afresh (found: ${have:-none})"
  rm -rf "$venv" "$triton_old_dir"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$torch_version" "setuptools>=64" wheel ninja
  mkdir -p "$src/build"
  (cd "$src" && "$venv/bin/python" setup.py -q egg_info --egg-base build >/dev/null)
  sed '/^\[/,$d' "$src/build/ddad_fast.egg-info/requires.txt" >"$cache/requires.txt"
  "$venv/bin/pip" install -q -r "$cache/requires.txt"  # the package's own requirements
  echo "$torch_version" >"$venv/ready"
else
  echo "reusing it (torch $have)"
fi
"$venv/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is None)" ||
  { echo "check-cuda: torch $torch_version here is not a CUDA build" >&2; exit 2; }
if [ ! -d "$triton_old_dir/triton" ]; then
  "$venv/bin/pip" install -q --no-deps --target "$triton_old_dir" "triton==$old_triton"
fi

step "build ddad_fast._C with CUDA (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset})"
(cd "$src" && "$venv/bin/python" setup.py -q build_ext --inplace | sed '/^\[/d')
so=$(ls "$src"/ddad_fast/_C*.so)
mkdir -p "$out"
export CUOBJDUMP=${CUOBJDUMP:-$("$venv/bin/python" -c \
  "import os, triton; print(os.path.join(os.path.dirname(triton.__file__), 'backends/nvidia/bin/cuobjdump'))")}

step "CUDA kernels of the extension"
"$venv/bin/python" "$src/bench/cuda_build_report.py" "$so" --out "$out/cuda_kernels.md"

step "Triton bn_stats kernels, sm_90, triton $("$venv/bin/python" -c 'import triton; print(triton.__version__)')"
"$venv/bin/python" "$src/bench/triton_aot_report.py" --out "$out/triton_kernels_pinned.md"

step "Triton bn_stats kernels, sm_90, triton $old_triton"
PYTHONPATH=$triton_old_dir:$src "$venv/bin/python" "$src/bench/triton_aot_report.py" \
  --out "$out/triton_kernels_$old_triton.md"

step "fast backend traced on fake CUDA tensors"
"$venv/bin/python" "$src/bench/trace_fast_step.py" --out "$out/trace_fast_step.md"

step "check-cuda passed; tables under $out"

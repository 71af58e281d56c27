#!/usr/bin/env bash
# Installs PyTorch's CPU build into the venv, in a step of its own before `make install`, as components/Dockerfile
# does: on PyPI torch==2.13.0 is the CUDA build (gigabytes of nvidia-* wheels), so the CPU wheel comes from
# PyTorch's own index (https://pytorch.org/get-started/locally/, "pip3 install torch --index-url
# https://download.pytorch.org/whl/cpu"). `make install` then finds the pin satisfied (2.13.0+cpu matches ==2.13.0).
# A venv that already has this torch version is left as it is, so `make ci-local` needs no network here.
#
# Environment: VENV (default .venv), PYTHON (default python3), TORCH_VERSION (default the Dockerfile's pin).
set -euo pipefail
venv="${VENV:-.venv}"
version="${TORCH_VERSION:-2.13.0}"
index="https://download.pytorch.org/whl/cpu"
test -x "${venv}/bin/python" || "${PYTHON:-python3}" -m venv "${venv}"
if "${venv}/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '${version}')" 2>/dev/null; then
  echo "torch ${version} is already installed in ${venv}"
  exit 0
fi
"${venv}/bin/python" -m pip install --quiet --upgrade pip
"${venv}/bin/python" -m pip install --quiet "torch==${version}" --index-url "${index}"
echo "installed torch ${version} (CPU) from ${index}"

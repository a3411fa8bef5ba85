#!/usr/bin/env bash
# One command from a fresh clone to upscaled images with the shipped default weights:
#   ./run.sh                                  # upscales the bundled sample x2 into out/
#   ./run.sh upscale photos/ -o out/ -s 3     # any `vdsr` command
# The first run creates .venv (CPU PyTorch, ONNX Runtime, OpenVINO); later runs reuse it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ ! -x .venv/bin/vdsr ]]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet torch==2.13.0
    .venv/bin/pip install --quiet -e ".[cpu]"
fi
if [[ $# -eq 0 ]]; then
    set -- upscale vdsr_deploy/assets/sample.png --output out/ --scale 2
fi
exec .venv/bin/vdsr "$@"

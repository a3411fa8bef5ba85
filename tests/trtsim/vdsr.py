"""``vdsr ARGS`` under the TensorRT simulator, for tests that need another process:
``python tests/trtsim/vdsr.py ARGS``. Environment: ``VDSR_TRTSIM_GPU_BYTES`` (the
simulated GPU's memory, default 80 GiB), ``VDSR_TRTSIM_COMPUTE`` (``onnxruntime`` or
``passthrough``), ``VDSR_TRTSIM_BUILD_SECONDS`` (a build takes at least this long)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trtsim

if __name__ == "__main__":
    gpu = trtsim.SimGpu(total_bytes=int(os.environ.get("VDSR_TRTSIM_GPU_BYTES", str(80 * trtsim.GIB))))
    trtsim.install(gpu, compute=os.environ.get("VDSR_TRTSIM_COMPUTE", "onnxruntime"))
    from vdsr_deploy.cli import app

    app()

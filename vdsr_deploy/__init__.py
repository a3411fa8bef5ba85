"""vdsr-deploy: VDSR super-resolution from training to optimized engines and exact, tiled,
high-throughput upscaling on PyTorch, ONNX Runtime and TensorRT.

Importing this package loads no heavy runtime (no torch, onnxruntime, tensorrt or CUDA);
import the submodules you need.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

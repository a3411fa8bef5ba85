"""The TensorRT wing: ``library`` (is TensorRT here, its logger), ``cuda`` (typed CUDA
runtime layer), ``cache`` (keys, sidecars, engine selection), ``builder`` (ONNX ->
engine) and ``runner`` (executes an engine). ``builder`` and ``runner`` never import each
other. Nothing here imports TensorRT or cuda-python at import time."""

"""The TensorRT wing: ``library`` (is TensorRT here, its logger), ``cuda`` (typed CUDA
runtime layer), ``build_config`` (how an engine is to be built), ``keys`` (cache keys and
file names), ``sidecar`` (the JSON next to each engine), ``matching`` (why an engine fits
or not, as reasons), ``cache`` (the engines folder and which engine to load), ``builder``
(ONNX -> engine) and ``runner`` (executes an engine). ``builder`` and ``runner`` never
import each other. Nothing here imports TensorRT or cuda-python at import time."""

"""Making model artifacts, never running them through a runtime of ours: ``onnx`` (weights ->
FP32/FP16 ONNX, checked and verified against PyTorch), ``quantize`` (a static INT8 QDQ
graph), ``calibration`` (its calibration and held-out tiles, and the measured quality cost)
and ``int8`` (the cached INT8 model, keyed by weights, recipe and data). Where a build must
run a model (the INT8 cost), the caller hands it an opener."""

"""The model and the files that hold it: ``network`` (VDSR itself), ``weights`` (safetensors
+ metadata, name/shape validation, no pickle), ``onnx_metadata`` (the ONNX metadata keys and
their one reader) and ``identity`` (facts read from model files without loading them: the
resume identity, the receptive radius). Importing this package loads nothing heavy."""

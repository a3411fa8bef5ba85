"""From a user's request to an open runner, artifacts first: ``prepare`` (:func:`open_runner`:
resolve ``auto``, make or find the artifact, then the registry's descriptor opens the
runner), ``resolve`` (``--precision auto``, with each fast path's measured cost),
``artifacts`` (the verified ONNX export, the INT8 model, the TensorRT engine of some
weights), ``cache`` (where they are cached: the user's cache folder; ``vdsr cache``),
``triton`` (a Triton model repository of those artifacts) and ``info`` (what this machine
offers: ``vdsr info`` and the versions reports record)."""

"""The plane engine, runtime-agnostic: ``tiling`` (pure integer tile planning, exact by
construction), ``colour`` (RGB/gray/alpha <-> the Y plane the network sees), ``pipeline``
(planes -> tiles -> cross-image batches -> a :class:`~vdsr_deploy.runner.Runner` -> stitched
planes), ``ensemble`` (the x8 self-ensemble around the pipeline, and the one
ensemble-or-not choice), ``image`` (one image through all of it), ``luma`` (a video frame's
decoded Y and chroma planes to the network and back, no RGB), ``device_colour`` and
``device_pipeline`` (the same on the runner's torch device). It never knows which runtime
is underneath."""

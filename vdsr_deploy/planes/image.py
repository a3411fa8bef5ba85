"""One image through the plane engine: colour in, the Y plane through the tiled pipeline
(with the x8 self-ensemble when asked), colour out."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.planes import colour
from vdsr_deploy.planes.ensemble import plane_upscaler
from vdsr_deploy.planes.pipeline import F32, PipelineConfig
from vdsr_deploy.runner import Runner


def upscale_pixels(pixels: NDArray[np.floating], runner: Runner, config: PipelineConfig) -> F32:
    """Super-resolve one image: ``(H, W, C)`` in [0, 1] -> ``(ceil(sH), ceil(sW), C)``."""
    prepared = colour.prepare(pixels, config.scale)
    y = plane_upscaler(config.ensemble)(prepared.y, runner, config.tiling, batch=config.batch)
    return colour.finish(prepared, y)

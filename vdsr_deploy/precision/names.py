"""Precision names: what ``--precision`` accepts and what an artifact or a runner computes
in. Which precisions each runtime has is its descriptor's to say
(:mod:`vdsr_deploy.backends.registry`)."""

from __future__ import annotations

from collections.abc import Iterable

from vdsr_deploy.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
"""Concrete precisions: what an artifact or a runner computes in."""
AUTO = "auto"
CHOICES = (AUTO, *PRECISIONS)
"""What ``--precision`` accepts."""
ONNX_PRECISIONS = ("fp32", "fp16")
"""Graph types the exporter writes; the INT8 ONNX is derived from the FP32 one."""
MAX_AUTO_COST_DB = 0.05
"""The most task PSNR (dB, any scale) ``auto`` may give up for speed."""


def check_precision(value: str, allowed: Iterable[str] = CHOICES) -> str:
    """``value`` if it is one of ``allowed``, else a :class:`ConfigError` naming both."""
    options = tuple(allowed)
    if value not in options:
        raise ConfigError(f"precision: expected one of {', '.join(options)}, got {value!r}")
    return value

"""PyAV, imported only when a video is read or written: ``import vdsr_deploy`` and ``vdsr
--help`` work without it, and using video without it is one clear sentence."""

from __future__ import annotations

from typing import Any

from vdsr_deploy.errors import BackendUnavailableError

INSTALL_HINT = "pip install 'vdsr-deploy[video]'"


def require_av() -> Any:
    """The ``av`` module (PyAV, which ships FFmpeg's libraries), or
    :class:`~vdsr_deploy.errors.BackendUnavailableError` saying how to install it."""
    try:
        import av
    except ImportError as error:
        raise BackendUnavailableError(
            f"reading and writing video needs PyAV (FFmpeg's libraries), which is not installed: {INSTALL_HINT}"
        ) from error
    return av


def av_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions FFmpeg's libraries raise through PyAV (for ``except``)."""
    av = require_av()
    return (av.error.FFmpegError, OSError, ValueError)

"""One exception tree for everything a user can get wrong or a backend can refuse.

The CLI turns any :class:`VdsrError` into one clear ``error:`` line (no traceback), with exit
code 2 for a :class:`ConfigError` (a usage error: a bad option value or options that
contradict each other) and 1 for the rest; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VdsrError(Exception):
    """Base class of every error vdsr-deploy raises on purpose."""


class InvalidInputError(VdsrError, ValueError):
    """An argument, file or array is not what the function expects."""


class ImageReadError(InvalidInputError):
    """An image file cannot be read (missing, corrupt, truncated, not an image, too large)."""


class ImageWriteError(VdsrError):
    """An output image cannot be written."""


class WeightsError(InvalidInputError):
    """A weights file is missing, unreadable, or does not match the VDSR architecture."""


class ConfigError(InvalidInputError):
    """A configuration value is out of range or inconsistent."""


class BackendUnavailableError(VdsrError):
    """A runtime (ONNX Runtime, TensorRT, CUDA, a provider) is not installed or has no device."""


class BuildError(VdsrError):
    """Exporting an ONNX model or building a TensorRT engine failed."""


class EngineMismatchError(VdsrError):
    """A cached engine was built for another GPU, TensorRT version, model or profile."""


class CudaError(VdsrError):
    """A CUDA runtime call returned an error status."""


class TrainingError(VdsrError):
    """Training cannot start or continue (bad data folder, bad config, bad checkpoint)."""


class VideoReadError(InvalidInputError):
    """A video file cannot be read (missing, not a video, no video stream, undecodable codec)."""


class VideoWriteError(VdsrError):
    """An output video cannot be written (codec or container refuses a stream, disk full)."""

"""Is TensorRT usable here, and the one process-wide TensorRT logger.

Shared by the engine builder and the runner (neither imports the other). Never imports
TensorRT at import time: :func:`require_tensorrt` and :func:`shared_tensorrt_logger` do it
on call.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from vdsr_deploy.errors import BackendUnavailableError

if TYPE_CHECKING:
    import tensorrt as trt

_LOG = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install 'vdsr-deploy[tensorrt-cu13]' for a CUDA 13 driver, or "
    "'vdsr-deploy[tensorrt-cu12]' for a CUDA 12 driver"
)


# ----------------------------------------------------------------------------------------
# Is TensorRT here?


def _probe_tensorrt() -> tuple[str | None, str]:
    """``(version, status)``: version None when TensorRT cannot be used, status says why.

    ``import tensorrt`` succeeding is not enough: the tensorrt-stubs package installs a
    ``tensorrt/`` folder of ``.pyi`` files only, which imports as an empty namespace package.
    """
    try:
        module = importlib.import_module("tensorrt")
    except ImportError:
        return None, "not installed"
    except Exception as error:  # a broken install raises OSError/RuntimeError from its libs
        return None, f"installed but fails to load ({type(error).__name__}: {error})"
    version = getattr(module, "__version__", None)
    if not hasattr(module, "Builder") or not isinstance(version, str):
        return None, "only type stubs (tensorrt-stubs) are installed, not TensorRT itself"
    return version, version


def tensorrt_available() -> bool:
    """Whether the TensorRT runtime (not just its type stubs) can be imported."""
    return _probe_tensorrt()[0] is not None


def tensorrt_status() -> str:
    """The TensorRT version, or why it cannot be used (for ``vdsr info``)."""
    return _probe_tensorrt()[1]


def require_tensorrt() -> str:
    """The TensorRT version; BackendUnavailableError (one sentence, with the pip command)."""
    version, status = _probe_tensorrt()
    if version is None:
        raise BackendUnavailableError(f"TensorRT is not usable here ({status}): {INSTALL_HINT}")
    return version



# ----------------------------------------------------------------------------------------
# TensorRT logging


class TensorRTLog:
    """Where TensorRT's messages go: errors are kept (for our exceptions' messages), the
    rest go to :mod:`logging` (``vdsr_deploy.backends.tensorrt.library``). Verbose messages are dropped early:
    a build emits tens of thousands."""

    SEVERITY_ERROR = 1
    SEVERITY_WARNING = 2
    SEVERITY_INFO = 3

    def __init__(self) -> None:
        self.errors: list[str] = []

    def record(self, severity: int, message: str) -> None:
        if severity <= self.SEVERITY_ERROR:
            self.errors.append(message)
            _LOG.error("TensorRT: %s", message)
        elif severity == self.SEVERITY_WARNING:
            _LOG.warning("TensorRT: %s", message)
        elif severity == self.SEVERITY_INFO:
            _LOG.info("TensorRT: %s", message)

    def summary(self, limit: int = 5) -> str:
        """The last ``limit`` error messages, or a note that there were none."""
        if not self.errors:
            return "TensorRT logged no error message"
        return " | ".join(self.errors[-limit:])

    @contextmanager
    def capturing(self) -> Iterator[TensorRTLog]:
        """Collect only this block's errors."""
        self.errors = []
        yield self


_SHARED_LOGGER: dict[str, Any] = {}


def shared_tensorrt_logger() -> tuple[TensorRTLog, trt.ILogger]:
    """The process-wide TensorRT logger (TensorRT keeps the first logger a builder or
    runtime was given, so every Builder and Runtime here gets the same one)."""
    if "logger" not in _SHARED_LOGGER:
        import tensorrt as trt

        sink = TensorRTLog()

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                level = int(severity)
                if level <= TensorRTLog.SEVERITY_INFO:
                    sink.record(level, msg)

        _SHARED_LOGGER["sink"] = sink
        _SHARED_LOGGER["logger"] = _Logger()
    sink_value: TensorRTLog = _SHARED_LOGGER["sink"]
    logger_value: trt.ILogger = _SHARED_LOGGER["logger"]
    return sink_value, logger_value

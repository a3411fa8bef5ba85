"""What a runtime is, declared once: :class:`Backend`. Everything that needs to know the
runtimes (``--backend`` choices, precisions, which device a spec computes on, availability,
versions for reports, validate's candidates, bench cases) reads the registry
(:mod:`vdsr_deploy.backends.registry`), which lists one descriptor per runtime.

A descriptor opens a runner from an :class:`OpenRequest`: a *resolved* run (a concrete
precision and device) plus the artifact the runtime executes. Making that artifact (ONNX
export, INT8 model, TensorRT engine) happens before, in :mod:`vdsr_deploy.runtime.prepare`;
a runtime never builds, evaluates or quantizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy.io_names import ShapeProfile
from vdsr_deploy.runner import Runner

ARTIFACTS = ("weights", "onnx", "engine")
"""What a runtime executes: the safetensors weights, an ONNX file or a TensorRT engine."""


@dataclass(frozen=True)
class OpenRequest:
    """A resolved run for one runtime: ``precision`` is concrete; ``artifact`` is the file the
    runtime executes (its descriptor's :attr:`Backend.artifact` kind; weights None: the
    shipped ones); ``cache_dir`` is where the runtime may keep caches of its own (ONNX
    Runtime's optimised graphs and TensorRT-provider engines); ``profile`` the input shapes
    the run sends (None: any). The rest are runtime options, ignored where they do not
    apply (``provider``: ONNX Runtime; ``channels_last``/``allow_tf32``: PyTorch;
    ``cuda_graphs``: PyTorch on CUDA and TensorRT)."""

    precision: str
    artifact: Path | None = None
    device: str = "auto"
    provider: str = "cpu"
    cache_dir: Path | None = None
    profile: ShapeProfile | None = None
    threads: int = 0
    channels_last: bool = True
    allow_tf32: bool = False
    cuda_graphs: bool = True


@dataclass(frozen=True)
class Backend:
    """One runtime.

    - ``name``: what ``--backend`` takes; ``summary``: one line for help and ``vdsr info``.
    - ``precisions``: what it computes in (concrete names of :mod:`vdsr_deploy.precision.names`).
    - ``artifact``: which file it executes (one of :data:`ARTIFACTS`).
    - ``compute_device(device, provider)``: where a run with ``--device device`` computes,
      ``cpu`` or a CUDA device string (``auto`` resolved; torch is imported only where an
      NVIDIA driver is loaded).
    - ``unavailable(device, precision, provider)``: why such a run cannot happen on this
      machine (one sentence, with the install command where one helps), or None.
    - ``versions()``: the packages it runs on and their versions (None: not installed),
      from package metadata, importing nothing heavy.
    - ``open(request)``: an inactive runner (use it as a context manager).
    """

    name: str
    summary: str
    precisions: tuple[str, ...]
    artifact: str
    compute_device: Callable[[str, str], str]
    unavailable: Callable[[str, str, str], str | None]
    versions: Callable[[], dict[str, str | None]]
    open: Callable[[OpenRequest], Runner]

    def __post_init__(self) -> None:
        if self.artifact not in ARTIFACTS:
            raise ValueError(f"{self.name}: artifact: expected one of {', '.join(ARTIFACTS)}, got {self.artifact!r}")

    def on_cuda(self, device: str, provider: str = "cpu") -> bool:
        """Whether a run with ``device`` (and ``provider``) computes on a CUDA device."""
        return self.compute_device(device, provider).startswith("cuda")

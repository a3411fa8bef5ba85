"""The machine and software a result came from: one home for every report that records them
(``vdsr bench``, ``vdsr validate``, training metadata, ``vdsr info`` and the benchmark
scripts); paths written so that a committed report names no machine's folders; and the
weights a result came from, with their two hashes named apart.

Versions come from package metadata (nothing heavy is imported for them); torch is imported
only by the functions that ask it about threads or the GPU.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
             "amx_int8", "amx_tile", "avx_vnni")  # fmt: skip


def package_version(*distributions: str) -> str | None:
    """The installed version of the first of ``distributions`` that is installed, else None."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The first processor's ``model name`` in ``/proc/cpuinfo`` (or in the ``cpuinfo`` text
    given), else what :mod:`platform` knows."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags (``flags`` on x86, ``Features`` on Arm) of the first processor
    in ``/proc/cpuinfo`` (or in the ``cpuinfo`` text given); empty when unreadable."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def notable_cpu_flags() -> list[str]:
    """The ISA extensions among :data:`CPU_FLAGS` this CPU has (they decide CPU speed)."""
    flags = cpu_flags()
    return [f for f in CPU_FLAGS if f in flags]


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes(meminfo: str | None = None) -> int | None:
    """Memory the kernel says new work can use without swapping: ``MemAvailable`` of
    /proc/meminfo (or ``meminfo``), else free physical pages from ``os.sysconf``; None when
    neither says."""
    try:
        text = Path("/proc/meminfo").read_text() if meminfo is None else meminfo
        for line in text.splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if meminfo is not None:
        return None
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def gpu_name() -> str | None:
    """``"<name> (compute X.Y)"`` of CUDA device 0 as PyTorch sees it, or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return f"{torch.cuda.get_device_name(0)} (compute {major}.{minor})"


def machine_info(load_before: list[float] | None = None) -> dict[str, Any]:
    """CPU model, cores, relevant ISA flags, memory, GPU, load and this process's nice value."""
    try:
        niceness: int | None = os.nice(0)
    except OSError:
        niceness = None
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpu_flags": notable_cpu_flags(),
        "memory_gib": memory_gib(),
        "gpu": gpu_name(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "nice": niceness,
    }


def thread_info(requested: int) -> dict[str, Any]:
    """The threads each runtime uses (``requested``: 0 = the runtime's default)."""
    import torch

    return {
        "requested": requested,
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "onnxruntime_intra_op": requested or "default (physical cores)",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def training_hardware() -> dict[str, Any]:
    """What a training run records about where it ran (in the weights' metadata)."""
    import torch

    return {
        "machine": platform.machine(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def portable_path(path: Path | str | None) -> str | None:
    """``path`` as a report should record it: the package's own files relative to the
    repository (``vdsr_deploy/assets/...``), files under the working directory relative to
    it, anything else by its name only. Reports name files by hash as well, so the name
    plus the hash identify them without the machine's folder layout."""
    if path is None:
        return None
    resolved = Path(path).expanduser().resolve()
    package_parent = Path(__file__).resolve().parent.parent
    for base in (package_parent, Path.cwd().resolve()):
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return resolved.name


def describe_weights(weights: dict[str, Any], *, markdown: bool = False) -> str:
    """``path (weights digest 89f3a08ad88d, file sha256 6381cd2ccfb4)``: the two hashes
    named apart (see :class:`~vdsr_deploy.model.weights.WeightsInfo`)."""
    quote = "`" if markdown else ""
    digest = weights.get("weights_digest") or weights.get("sha256")  # reports before the rename
    hashes = [f"weights digest {quote}{str(digest)[:12]}{quote}"] if digest else []
    if weights.get("file_sha256"):
        hashes.append(f"file sha256 {quote}{str(weights['file_sha256'])[:12]}{quote}")
    return f"{quote}{weights.get('path')}{quote}" + (f" ({', '.join(hashes)})" if hashes else "")


def cpu_cache_key() -> str:
    """Identity of this CPU for host-specific caches (model, flags and machine, hashed): ONNX
    Runtime's optimised graphs and the measured quality records are kept per CPU."""
    import hashlib
    import os

    text = cpu_model() + "|" + " ".join(sorted(cpu_flags())) + "|" + os.uname().machine
    return hashlib.sha256(text.encode()).hexdigest()[:10]

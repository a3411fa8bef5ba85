"""Runtimes behind one interface. Submodules import their runtime lazily; this package
imports none of them."""

from __future__ import annotations

from vdsr_deploy.runner import Runner, RunnerInfo

__all__ = ["Runner", "RunnerInfo"]

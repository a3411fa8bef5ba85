"""The resume manifest trusts an output only when its size AND SHA-256 match the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.imageio import file_digest, read_image
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.job.manifest import Manifest, settings_key
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig


def flip_one_byte(path: Path) -> None:
    """Change one byte in the middle of ``path``; its size stays the same."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verdict_compares_the_hash_not_only_the_size(tmp_path: Path) -> None:
    source, target = tmp_path / "in.png", tmp_path / "out" / "in.png"
    source.write_bytes(b"input")
    target.parent.mkdir()
    target.write_bytes(bytes(range(200)))
    manifest = Manifest(tmp_path / "out")
    settings = settings_key({"scale": 2})
    manifest.record(target, file_digest(target), source, settings)
    reloaded = Manifest(tmp_path / "out")  # what a re-run reads from disk
    assert reloaded.verdict(target, source, settings).state == "complete"
    size = target.stat().st_size
    flip_one_byte(target)
    assert target.stat().st_size == size
    verdict = reloaded.verdict(target, source, settings)
    assert (verdict.state, verdict.reason) == (
        "redo",
        "output does not match its record (incomplete or changed); redoing it",
    )


def test_a_same_size_corrupted_output_is_redone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    y, x = np.mgrid[0:23, 0:29]
    for index in range(2):
        pixels = np.stack([(x * 7 + y * (3 + index) + c * 40) % 256 for c in range(3)], axis=2)
        Image.fromarray(pixels.astype(np.uint8)).save(inputs / f"img{index}.png")
    config = JobConfig(
        inputs=(str(inputs),),
        output=out,
        pipeline=PipelineConfig(scale=2.0, tiling=TileConfig(tile=40, halo=3), batch=2),
    )
    events: list[dict[str, Any]] = []
    with TorchRunner(VDSR(depth=3, channels=4).eval(), device="cpu", channels_last=False) as runner:
        assert len(run_job(config, runner).done) == 2
        good = (out / "img0.png").read_bytes()
        flip_one_byte(out / "img0.png")
        again = run_job(config, runner, events.append)
    assert [item.target.name for item in again.done] == ["img0.png"]
    assert [skipped.target.name for skipped in again.skipped] == ["img1.png"]
    assert any("does not match its record" in note.message for note in again.notes)
    assert (out / "img0.png").read_bytes() == good  # redone, byte for byte the first result
    read_image(out / "img0.png")

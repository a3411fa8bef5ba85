"""The resume manifest trusts an output only when its size AND SHA-256 match the record."""

from __future__ import annotations

import json
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


def test_a_torn_last_line_cut_anywhere_even_inside_a_multibyte_character(tmp_path: Path) -> None:
    """Issue 27 (kind 2): names beyond ASCII. A crash may cut the last line at any byte,
    inside a UTF-8 character too; every earlier record survives, the torn one is dropped,
    and the next record is readable (on a line of its own)."""
    out = tmp_path / "out"
    out.mkdir()
    names = ["café-ß.png", "日本語の画像.png", "emoji-🦀.png"]
    settings = settings_key({"scale": 2})
    source = tmp_path / "src.png"
    source.write_bytes(b"input")
    for name in names:
        (out / name).write_bytes(name.encode() * 3)
    manifest = Manifest(out)
    for name in names:
        manifest.record(out / name, file_digest(out / name), source, settings)
    # as manifests written before issue 25 stored names: raw UTF-8 (they are ASCII-escaped now)
    raw = [json.dumps(json.loads(line), ensure_ascii=False) for line in manifest.path.read_text().splitlines()]
    manifest.path.write_bytes(("\n".join(raw) + "\n").encode())
    whole = manifest.path.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    last_line = whole[last_start:]
    multibyte = [i for i in range(len(last_line)) if last_line[i] & 0xC0 == 0x80]  # continuation bytes
    assert multibyte, "the last record holds a multi-byte character"
    for cut in range(last_start + 1, len(whole) - 1):
        manifest.path.write_bytes(whole[:cut])
        reloaded = Manifest(out)
        for name in names[:-1]:
            assert reloaded.verdict(out / name, source, settings).state == "complete", (cut, name)
        assert reloaded.get(out / names[-1]) is None, cut
        reloaded.record(out / names[-1], file_digest(out / names[-1]), source, settings)
        again = Manifest(out)
        assert all(again.verdict(out / n, source, settings).state == "complete" for n in names), cut
        assert again.get(out / names[-1]) is not None and again.get(out / names[-1]).output == names[-1]  # type: ignore[union-attr]

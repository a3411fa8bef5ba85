"""Outputs appear at their final path only whole: temporary file, fsync, rename.

The writer is watched between its steps, and real processes are SIGKILLed at fixed points
(no timing: the child kills itself where the test says), so what a crash leaves behind
is seen, not assumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdsr_deploy.imageio import (
    TEMP_SUFFIX,
    file_digest,
    open_image_writer,
    read_image,
    stale_temporaries,
)

ROOT = Path(__file__).resolve().parents[2]
ROWS = np.arange(7 * 5 * 3, dtype=np.uint8).reshape(7, 5, 3)


@pytest.mark.parametrize("fmt", ["png", "tiff", "jpg"])
def test_the_target_appears_only_on_publish(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    bit_depth = 16 if fmt == "tiff" else 8
    rows = ROWS.astype(np.uint16) * 257 if bit_depth == 16 else ROWS
    writer = open_image_writer(target, 7, 5, 3, bit_depth=bit_depth)
    writer.write_rows(rows[:3])
    assert not target.exists()
    writer.write_rows(rows[3:])
    digest = writer.finish()
    assert not target.exists(), "the data is complete but must not be visible yet"
    assert writer.temporary != target and writer.temporary.parent == target.parent
    assert writer.temporary.name.endswith(TEMP_SUFFIX) and file_digest(writer.temporary) == digest
    assert writer.publish() == target
    assert file_digest(target) == digest and not stale_temporaries(target)
    assert (read_image(target).height, read_image(target).width) == (7, 5)


def _run_child(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("moment", ["while_writing", "after_finish"])
def test_a_sigkilled_writer_leaves_no_file_at_the_target(tmp_path: Path, moment: str) -> None:
    child = _run_child(
        f"""
        import os, signal
        import numpy as np
        from vdsr_deploy.imageio import open_image_writer
        rows = np.zeros((64, 33, 3), dtype=np.uint8)
        writer = open_image_writer("out.png", 128, 33, 3)
        writer.write_rows(rows)
        if {moment!r} == "after_finish":
            writer.write_rows(rows)
            writer.finish()
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    target = tmp_path / "out.png"
    assert not target.exists()
    assert len(stale_temporaries(target)) == 1  # what the next run of a job removes


def test_a_job_killed_between_manifest_and_rename_redoes_the_output(tmp_path: Path) -> None:
    """The manifest records an output just before its rename: a SIGKILL right there leaves
    the record and a temporary file but no output; the re-run redoes it and cleans up."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    y, x = np.mgrid[0:19, 0:23]
    Image.fromarray(np.stack([(x * 9 + y * 5 + c) % 256 for c in range(3)], 2).astype(np.uint8)).save(
        inputs / "a.png"
    )
    job = """
        import os, signal, sys
        import torch
        from vdsr_deploy.job import manifest
        from vdsr_deploy.job import JobConfig, run_job
        from vdsr_deploy.model.network import VDSR
        from vdsr_deploy.planes.pipeline import PipelineConfig
        from vdsr_deploy.backends.torch.runner import TorchRunner
        from vdsr_deploy.planes.tiling import TileConfig

        if sys.argv[1:] == ["kill"]:
            real_record = manifest.Manifest.record

            def record_then_die(self, *args, **kwargs):
                real_record(self, *args, **kwargs)
                os.kill(os.getpid(), signal.SIGKILL)

            manifest.Manifest.record = record_then_die
        torch.manual_seed(0)
        config = JobConfig(
            inputs=("in",), output=__import__("pathlib").Path("out"),
            pipeline=PipelineConfig(scale=2.0, tiling=TileConfig(tile=40, halo=3), batch=1),
        )
        with TorchRunner(VDSR(depth=3, channels=4).eval(), channels_last=False) as runner:
            summary = run_job(config, runner)
        print([i.target.name for i in summary.done], [n.message for n in summary.notes])
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", textwrap.dedent(job)]
    killed = subprocess.run([*command, "kill"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    target = tmp_path / "out" / "a.png"
    assert not target.exists() and len(stale_temporaries(target)) == 1
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "['a.png']" in again.stdout and "recorded output is missing" in again.stdout
    assert target.is_file() and not stale_temporaries(target)
    read_image(target)

"""``--tile auto`` on the CPU: the activation budget from the memory available, the halo
overhead the job reports, and the first line / JSON report that say them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vdsr_deploy.environment import available_memory_bytes
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.imageio import write_image
from vdsr_deploy.job.autotile import CPU_CAP, CPU_FLOOR, AutoTile, cpu_budget

GIB = 1 << 30


def test_cpu_budget_is_a_quarter_of_the_memory_available_within_floor_and_cap() -> None:
    assert cpu_budget(8 * GIB) == 2 * GIB
    assert cpu_budget(24 * GIB) == CPU_CAP == 4 * GIB  # a 24 GiB machine: capped
    assert cpu_budget(512 << 20) == CPU_FLOOR  # 128 MiB would fit almost no tile
    assert cpu_budget(None) == CPU_FLOOR
    with pytest.raises(ConfigError, match="expected >= 0 bytes, got -1"):
        cpu_budget(-1)


def test_a_whole_8_mpx_output_fits_the_cap_and_a_2_gib_machine_tiles_it() -> None:
    from vdsr_deploy.job.autotile import choose_tile

    eight = [(1000, 2000)]  # a 2000 x 4000 output: 8 Mpx
    whole = choose_tile(eight, scale=2.0, batch=4, halo=20, device="cpu", precision="fp32", channels=64,
                        budget=cpu_budget(24 * GIB))  # fmt: skip
    assert whole.tile == 0  # 8 Mpx x 524 B = 3.9 GiB <= 4 GiB
    small = choose_tile(eight, scale=2.0, batch=4, halo=20, device="cpu", precision="fp32", channels=64,
                        budget=cpu_budget(2 * GIB))  # fmt: skip
    assert small.tile == 480  # isqrt(512 MiB / (4 x 524 B)) = 494, down to a multiple of 32


def test_available_memory_reads_mem_available_from_meminfo() -> None:
    text = "MemTotal:       24683784 kB\nMemFree:        1000 kB\nMemAvailable:   2048 kB\n"
    assert available_memory_bytes(text) == 2048 * 1024
    assert available_memory_bytes("MemTotal: 1 kB\n") is None
    assert available_memory_bytes("MemAvailable: lots\n") is None
    assert (available_memory_bytes() or 0) > 0  # this machine says something


def test_auto_tile_describes_its_halo_overhead() -> None:
    assert AutoTile(256, "", halo_overhead=0.3847).describe() == "tile 256 (halo overhead +38.5%)"
    assert AutoTile(0, "", halo_overhead=0.0).describe() == "whole image"
    assert AutoTile(256, "").describe() == "tile 256"


def test_the_job_says_its_tile_and_halo_overhead_on_its_first_line_and_in_the_report(
    tmp_path: Path, tiny_weights: Path
) -> None:
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app

    image = tmp_path / "a.png"
    write_image(image, np.random.default_rng(0).random((40, 50, 3)), bit_depth=8)
    base = ["upscale", str(image), "-w", str(tiny_weights), "-b", "torch", "--device", "cpu", "-q"]
    report = tmp_path / "r.json"
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "o"), "--tile", "48", "--halo", "4",
                                      "--report", str(report)])  # fmt: skip
    assert result.exit_code == 0, result.output
    # an 80x100 output at tile 48 / halo 4: 2 windows (96 px) down, 3 (144 px) across
    expected = 96 * 144 / (80 * 100) - 1
    assert f"tile 48 (halo overhead +{expected:.1%}), batch 4" in result.output
    tiling = json.loads(report.read_text())["tiling"]
    assert tiling["tile"] == 48 and tiling["halo"] == 4 and tiling["halo_overhead"] == pytest.approx(expected)
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "o2"), "--report", str(report)])
    assert result.exit_code == 0 and "whole image, batch 4" in result.output, result.output
    assert json.loads(report.read_text())["tiling"] == {"tile": 0, "halo": 20, "halo_overhead": 0.0}

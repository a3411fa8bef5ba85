"""The rendered validation report says exactly what the figures say.

A report with hand-picked, mutually distinct figures is rendered; every number in the
Markdown tables and the JSON is read back and compared with the literal it must show, so a
shifted column, a histogram cut one entry short or a wrong image's share are caught.
"""

from __future__ import annotations

import json
import math

from vdsr_deploy.parity import (
    FAILED,
    PASSED,
    ImageFigures,
    PairFigures,
    PairResult,
    QuantFigures,
    ToleranceConfig,
    ValidationReport,
)
from vdsr_deploy.parity.report import SUMMARY_COLUMNS, TERMINAL_COLUMNS, render_markdown, terminal_row
from vdsr_deploy.planes.tiling import TileConfig

TOLERANCES = ToleranceConfig()
# 6 entries: one more than the summary shows; 8: exactly as many as the 16-bit table shows
HIST8 = ((0, 9_000), (1, 700), (2, 200), (3, 60), (4, 30), (9, 10))  # 10,000 pixels
HIST16 = ((0, 8_000), (1, 1_000), (2, 500), (3, 250), (4, 125), (5, 75), (6, 40), (8, 10))


def image(name: str, shape: tuple[int, int], max_abs: float, identical: int, ref: float, cand: float) -> ImageFigures:
    pixels = shape[0] * shape[1]
    q8 = QuantFigures(8, pixels, ((0, identical), (1, pixels - identical)))
    q16 = QuantFigures(16, pixels, ((0, identical // 2), (7, pixels - identical // 2)))
    return ImageFigures(name, "test", shape, max_abs, max_abs / 10, max_abs / 2, 0, 50.0 + max_abs,
                        (q8, q16), hr_psnr_reference=ref, hr_psnr_candidate=cand)  # fmt: skip


def report() -> ValidationReport:
    images = (
        image("wide", (20, 300), 0.0125, 5_900, 31.25, 31.5),  # 6,000 px, 98.3333% identical
        image("tall", (400, 10), 0.0039, 3_100, 28.0, 27.125),  # 4,000 px, 77.5% identical
    )
    figures = PairFigures(
        pixels=10_000, max_abs=0.0125, mean_abs=0.000456, p99_abs=0.00789, nonfinite=3,
        psnr_db=41.2345, quantized=(QuantFigures(8, 10_000, HIST8), QuantFigures(16, 10_000, HIST16)),
        worst_image="wide", hr_psnr_delta_mean=-0.3125, hr_psnr_delta_worst=-0.875,
    )  # fmt: skip
    passed = PairResult(
        "onnxruntime-fp32", "onnxruntime:cpu:fp32", "torch:cpu:fp32", "fp32",
        TOLERANCES.fp32, PASSED, figures=figures, images=images,
    )  # fmt: skip
    identical = PairFigures(
        pixels=10_000, max_abs=0.0, mean_abs=0.0, p99_abs=0.0, nonfinite=0, psnr_db=math.inf,
        quantized=(QuantFigures(8, 10_000, ((0, 10_000),)), QuantFigures(16, 10_000, ((0, 10_000),))),
        worst_image="wide",
    )  # fmt: skip
    untiled = PairResult(
        "untiled", "torch:cpu:fp32 untiled", "torch:cpu:fp32", "tiling", TOLERANCES.tiling,
        FAILED, reasons=("max |diff| 0.5 > 0.001",), figures=identical,
    )  # fmt: skip
    return ValidationReport(
        created="2026-11-27T12:00:00", weights={"path": "w.safetensors", "sha256": "ab" * 32},
        reference="torch:cpu:fp32", scale=2.0, tiling=TileConfig(tile=40, halo=4), batch=2,
        bit_depths=(8, 16), images=({"name": "wide"}, {"name": "tall"}), pairs=(passed, untiled),
        artifacts=(), tolerances=TOLERANCES,
    )  # fmt: skip


def table(markdown: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header row starts with ``header_start``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    columns = [cell.strip() for cell in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == len(columns), line
        rows.append(dict(zip(columns, cells, strict=True)))
    return rows


def test_summary_row_shows_the_figures() -> None:
    markdown = render_markdown(report())
    assert markdown.startswith("# vdsr validate — FAILED\n")
    rows = table(markdown, "| pair | candidate | status |")
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert rows[0] == {
        "pair": "onnxruntime-fp32",
        "candidate": "onnxruntime:cpu:fp32",
        "status": "passed",
        "max abs": "0.0125",
        "mean abs": "0.000456",
        "p99 abs": "0.00789",
        "NaN/Inf": "3",
        "8-bit identical": "90.0000%",
        "8-bit LSB histogram": "0:9000 1:700 2:200 3:60 4:30 ... max 9",
        "PSNR vs ref (dB)": "41.23",
        "task ΔPSNR (dB)": "-0.3125 (worst -0.8750)",
    }
    assert rows[1]["8-bit identical"] == "100.0000%" and rows[1]["PSNR vs ref (dB)"] == "identical"
    assert rows[1]["8-bit LSB histogram"] == "0:10000" and rows[1]["task ΔPSNR (dB)"] == "-"
    assert "- **untiled**: max |diff| 0.5 > 0.001" in markdown


def test_per_image_and_16_bit_rows_show_the_figures() -> None:
    markdown = render_markdown(report())
    per_image = [r for r in table(markdown, "| pair | image | output |") if r["pair"] == "onnxruntime-fp32"]
    assert [(r["image"], r["output"], r["max abs"], r["p99 abs"], r["8-bit identical"], r["PSNR vs ref"],
             r["task PSNR ref / cand"]) for r in per_image] == [
        ("wide", "300x20", "0.0125", "0.00625", "98.3333%", "50.01", "31.25 / 31.50"),
        ("tall", "10x400", "0.0039", "0.00195", "77.5000%", "50.00", "28.00 / 27.12"),
    ]  # fmt: skip
    deep = {r["pair"]: r for r in table(markdown, "| pair | identical | LSB histogram |")}
    assert deep["onnxruntime-fp32"] == {
        "pair": "onnxruntime-fp32", "identical": "80.0000%",
        "LSB histogram": "0:8000 1:1000 2:500 3:250 4:125 5:75 6:40 8:10",
    }  # fmt: skip
    tolerances = {r["class"]: r for r in table(markdown, "| class | max abs |")}
    assert list(tolerances) == ["fp32", "tiling", "fp16", "bf16", "int8"]
    fp16 = TOLERANCES.fp16
    assert tolerances["fp16"]["max LSB"] == str(fp16.max_lsb_8bit)
    assert tolerances["fp16"]["8-bit identical ≥"] == f"{fp16.min_identical_8bit:.1%}"


def test_json_numbers_equal_the_figures() -> None:
    data = json.loads(report().to_json())
    assert data["passed"] is False and data["failures"] == ["untiled: max |diff| 0.5 > 0.001"]
    pair = data["pairs"][0]
    figures = pair["figures"]
    assert (figures["pixels"], figures["max_abs"], figures["mean_abs"], figures["p99_abs"]) == (
        10_000, 0.0125, 0.000456, 0.00789,
    )  # fmt: skip
    assert (figures["nonfinite"], figures["psnr_db"], figures["worst_image"]) == (3, 41.2345, "wide")
    q8, q16 = figures["quantized"]
    assert q8 == {
        "bit_depth": 8, "pixels": 10_000, "identical": 9_000, "identical_fraction": 0.9, "max_lsb": 9,
        "histogram": {"0": 9_000, "1": 700, "2": 200, "3": 60, "4": 30, "9": 10},
    }  # fmt: skip
    assert (q16["identical"], q16["max_lsb"], q16["identical_fraction"]) == (8_000, 8, 0.8)
    assert (figures["hr_psnr_delta_mean"], figures["hr_psnr_delta_worst"]) == (-0.3125, -0.875)
    wide, tall = pair["images"]
    assert (wide["shape"], wide["hr_psnr_delta"], wide["quantized"][0]["identical"]) == ([20, 300], 0.25, 5_900)
    assert (tall["shape"], tall["hr_psnr_delta"], tall["quantized"][0]["max_lsb"]) == ([400, 10], -0.875, 1)
    assert data["pairs"][1]["figures"]["psnr_db"] == "inf"


def test_terminal_rows_fit_their_columns() -> None:
    """The 80-column table: an identical pair's PSNR is one short cell ("identical" wrapped)."""
    passed, untiled = report().pairs
    assert dict(zip(TERMINAL_COLUMNS, terminal_row(passed), strict=True)) == {
        "pair": "onnxruntime-fp32", "status": "passed", "max abs": "0.0125", "p99 abs": "0.00789",
        "8-bit eq": "90.00%", "PSNR": "41.23", "task Δ": "-0.3125",
    }  # fmt: skip
    assert terminal_row(untiled)[-2:] == ("∞", "-")

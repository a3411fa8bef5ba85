"""--precision auto: CPU flags -> candidate paths -> the first within the quality limit."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.environment import cpu_flags
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.precision.decision import (
    VNNI_FLAGS,
    CpuPath,
    SpeedTable,
    choose_cpu_path,
    choose_precision,
    cpu_paths,
    paths_not_offered,
    precision_warning,
)
from vdsr_deploy.precision.names import MAX_AUTO_COST_DB, check_precision

SAPPHIRE_RAPIDS = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"})
ZEN4 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
CASCADE_LAKE = frozenset({"avx512f", "avx512_vnni"})
HASWELL = frozenset({"avx2", "fma"})


def test_cpu_flags_are_read_from_cpuinfo_text() -> None:
    x86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags: other\n"
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_vnni"}  # the first processor's
    assert cpu_flags("processor : 0\nFeatures : fp asimd asimddp bf16\n") == {"fp", "asimd", "asimddp", "bf16"}
    assert cpu_flags("processor : 0\n") == frozenset()


BLOCKED = "not taken by auto for this test"


@pytest.mark.parametrize(
    "flags, expected",
    [
        (SAPPHIRE_RAPIDS, ["int8", "int8", "bf16", "bf16", "fp32", "fp32", "fp32"]),
        (ZEN4, ["int8", "int8", "bf16", "bf16", "fp32", "fp32", "fp32"]),
        (CASCADE_LAKE, ["int8", "int8", "fp32", "fp32", "fp32"]),  # no bf16 hardware: never offered
        (HASWELL, ["int8", "int8", "fp32", "fp32", "fp32"]),  # INT8 without VNNI: measured, not assumed
        (frozenset(), ["int8", "int8", "fp32", "fp32", "fp32"]),
    ],
)
def test_cpu_paths_follow_the_flags_never_assumed(flags: frozenset[str], expected: list[str]) -> None:
    paths = cpu_paths(flags)
    assert [p.precision for p in paths] == expected
    assert [p.key for p in paths if p.precision == "fp32"] == ["onnxruntime-fp32", "openvino-fp32", "torch-fp32"]
    assert [p.key for p in paths if p.fallback] == ["torch-fp32"]
    int8 = {p.backend: p for p in paths if p.precision == "int8"}
    # without VNNI, only a measurement on this machine may take INT8 (it may be slower there)
    assert bool(int8["onnxruntime"].needs_measuring) == (not flags & VNNI_FLAGS)
    assert all(p.needs_measuring for p in paths if p.backend == "openvino")
    assert all(not p.auto_blocked for p in paths)
    assert [p.auto_blocked for p in cpu_paths(flags, int8_blocked=BLOCKED) if p.precision == "int8"] == [BLOCKED] * 2


def no_cost(path: CpuPath) -> dict[str, float]:
    return {"x2": 0.0, "x3": 0.0, "x4": 0.0}


def test_auto_never_takes_a_blocked_path_nor_builds_it() -> None:
    asked: list[str] = []

    def cost(path: CpuPath) -> dict[str, float]:
        asked.append(path.key)
        return no_cost(path)

    choice = choose_cpu_path(cpu_paths(SAPPHIRE_RAPIDS, int8_blocked=BLOCKED), cost)
    assert (choice.precision, choice.backend) == ("bf16", "torch")
    assert asked == ["torch-bf16"]  # the blocked INT8 model is not even built for its cost
    assert choice.passed_over[:2] == (f"int8 on openvino ({BLOCKED})", f"int8 on onnxruntime ({BLOCKED})")
    assert choose_cpu_path(cpu_paths(CASCADE_LAKE, int8_blocked=BLOCKED), cost).precision == "fp32"


def test_auto_takes_the_first_path_within_the_limit_and_says_why() -> None:
    costs = {"int8": {"x2": -0.01, "x3": -0.02, "x4": -0.06}, "bf16": {"x2": -0.03, "x3": 0.01, "x4": -0.05}}
    asked: list[str] = []

    def cost(path: CpuPath) -> dict[str, float]:
        asked.append(path.key)
        return costs[path.precision]

    choice = choose_cpu_path(cpu_paths(SAPPHIRE_RAPIDS), cost)
    assert (choice.precision, choice.backend) == ("bf16", "torch")
    assert asked == ["onnxruntime-int8", "torch-bf16"]  # fp32 needs no record; OpenVINO only when measured
    over = dict(line.split(" (", 1) for line in choice.passed_over)
    assert "0.060" in over["int8 on onnxruntime"] and "measured" in over["int8 on openvino"]
    assert "x4 -0.050" in choice.reason and choice.requested == "auto" and not choice.measurement
    line = choice.describe()
    assert line.startswith("precision bf16 on torch, auto:") and "passed over" in line
    # reproducible: the same flags and records give the same choice
    assert choose_cpu_path(cpu_paths(SAPPHIRE_RAPIDS), lambda p: costs[p.precision]) == choice


def test_auto_falls_back_to_fp32_when_no_path_qualifies() -> None:
    choice = choose_cpu_path(
        cpu_paths(ZEN4), lambda p: "build failed" if p.precision == "int8" else {"x2": -0.2}
    )
    assert choice.precision == "fp32" and choice.backend == "onnxruntime"
    assert "int8 on onnxruntime (build failed)" in choice.passed_over
    assert f"bf16 on torch (costs 0.200 dB > {MAX_AUTO_COST_DB:g}: x2 -0.200)" in choice.passed_over


def table(**speeds: float) -> Callable[[Sequence[CpuPath]], SpeedTable]:
    asked: list[list[str]] = []

    def measure(paths: Sequence[CpuPath]) -> SpeedTable:
        asked.append([p.key for p in paths])
        return SpeedTable({p.key: speeds.get(p.key.replace("-", "_"), math.nan) for p in paths}, "measured in a test")

    measure.asked = asked  # type: ignore[attr-defined]
    return measure


def test_auto_takes_the_fastest_eligible_path_as_measured() -> None:
    speeds = table(onnxruntime_fp32=1.0, openvino_fp32=1.2, onnxruntime_int8=3.0, openvino_int8=3.3)
    choice = choose_cpu_path(cpu_paths(HASWELL), no_cost, speeds=speeds)
    assert (choice.precision, choice.backend) == ("int8", "openvino")
    assert "measured fastest here: 3.30x fp32 on onnxruntime (3.300 Mpx/s)" in choice.reason
    # every eligible path was timed, PyTorch FP32 (the fallback) was not
    assert speeds.asked == [["openvino-int8", "onnxruntime-int8", "onnxruntime-fp32", "openvino-fp32"]]  # type: ignore[attr-defined]
    assert choice.measurement == "measured in a test"
    assert choice.describe_lines()[1] == "speed: measured in a test"
    assert "int8 on onnxruntime (measured 3.00x fp32 on onnxruntime)" in choice.passed_over
    assert "fp32 on onnxruntime (measured 1.000 Mpx/s)" in choice.passed_over


def test_a_measured_path_over_the_quality_limit_is_never_taken_however_fast() -> None:
    speeds = table(onnxruntime_fp32=1.0, openvino_fp32=0.9, onnxruntime_int8=9.0, openvino_int8=9.9)
    choice = choose_cpu_path(cpu_paths(HASWELL), lambda p: {"x2": -0.051}, speeds=speeds)
    assert (choice.precision, choice.backend) == ("fp32", "onnxruntime")
    assert "onnxruntime-int8" not in speeds.asked[0]  # type: ignore[attr-defined]  # not even timed
    blocked = choose_cpu_path(cpu_paths(HASWELL, int8_blocked=BLOCKED), no_cost, speeds=speeds)
    assert blocked.precision == "fp32"


def test_a_failed_or_partial_measurement_falls_back_to_the_benchmarks_order() -> None:
    choice = choose_cpu_path(cpu_paths(CASCADE_LAKE), no_cost, speeds=lambda paths: "no path could be timed")
    assert (choice.precision, choice.backend) == ("int8", "onnxruntime")  # VNNI: first that needs no measuring
    assert "speed not measured: no path could be timed" in choice.reason
    partial = choose_cpu_path(cpu_paths(HASWELL), no_cost, speeds=table(onnxruntime_fp32=1.0, onnxruntime_int8=2.0))
    assert (partial.precision, partial.backend) == ("int8", "onnxruntime")
    assert "int8 on openvino (could not be timed)" in partial.passed_over


def test_choose_precision_cuda_named_backend_and_concrete() -> None:
    never = lambda p: pytest.fail("no cost should be read")  # noqa: E731
    assert choose_precision("auto", backend="tensorrt", cuda=True, quality_cost=never).precision == "fp16"
    assert choose_precision("fp32", backend="torch", cuda=False, flags=SAPPHIRE_RAPIDS).describe() == (
        "precision fp32 on torch (as asked)"
    )
    # a named backend restricts auto to that backend's paths (PyTorch has no INT8)
    choice = choose_precision(
        "auto", backend="torch", cuda=False, flags=CASCADE_LAKE, quality_cost=lambda p: {"x2": 0.0}
    )
    assert (choice.precision, choice.backend) == ("fp32", "torch")
    assert "int8 (not run by --backend torch)" in choice.passed_over
    choice = choose_precision(
        "auto", backend="onnxruntime", cuda=False, flags=SAPPHIRE_RAPIDS, quality_cost=lambda p: {"x2": 0.0},
        int8_blocked=BLOCKED,
    )  # fmt: skip
    assert (choice.precision, choice.backend) == ("fp32", "onnxruntime")
    assert choice.passed_over == ("bf16 (not run by --backend onnxruntime)", f"int8 on onnxruntime ({BLOCKED})")
    # OpenVINO named: its own FP32 is its reference, taken without a measurement
    named = choose_precision("auto", backend="openvino", cuda=False, flags=HASWELL, quality_cost=lambda p: "none")
    assert (named.precision, named.backend) == ("fp32", "openvino")


def test_unavailable_paths_are_named_never_taken() -> None:
    def unavailable(path: CpuPath) -> str | None:
        return "pip install openvino" if path.backend == "openvino" else None

    speeds = table(onnxruntime_fp32=1.0, onnxruntime_int8=2.0, openvino_int8=9.0)
    choice = choose_precision(
        "auto", backend="auto", cuda=False, flags=HASWELL, quality_cost=no_cost, unavailable=unavailable,
        speeds=speeds,
    )  # fmt: skip
    assert (choice.precision, choice.backend) == ("int8", "onnxruntime")
    assert "int8 on openvino (pip install openvino)" in choice.passed_over
    assert "fp32 on openvino (pip install openvino)" in choice.passed_over
    no_onnxruntime = choose_precision(
        "auto", backend="auto", cuda=False, flags=HASWELL, quality_cost=no_cost,
        unavailable=lambda p: None if p.backend == "torch" else "not installed",
    )  # fmt: skip
    assert (no_onnxruntime.precision, no_onnxruntime.backend) == ("fp32", "torch")  # the fallback
    checked: list[str] = []
    choose_precision(
        "auto", backend="auto", cuda=False, flags=HASWELL, quality_cost=no_cost,
        unavailable=lambda p: checked.append(p.key),  # type: ignore[func-returns-value]
    )  # fmt: skip
    assert "torch-fp32" not in checked  # the fallback is not checked (that imports PyTorch) when not needed


def test_an_fp32_decision_says_what_it_passed_over_and_why() -> None:
    """No "no faster path" claim: every faster path is named with why it was not taken."""
    choice = choose_precision(
        "auto", backend="auto", cuda=False, flags=HASWELL, quality_cost=no_cost, int8_blocked=BLOCKED
    )
    assert choice.precision == "fp32" and "faster path" not in choice.describe()
    bf16, *rest = choice.passed_over
    assert bf16 == "bf16 (no amx_bf16/avx512_bf16 here: bf16 is emulated, slower than fp32)"
    assert rest == [f"int8 on openvino ({BLOCKED})", f"int8 on onnxruntime ({BLOCKED})"]
    assert choice.describe_lines() == [
        "precision fp32 on onnxruntime, auto: the reference (exact)",
        *(f"passed over: {line}" for line in choice.passed_over),
    ]
    assert paths_not_offered(SAPPHIRE_RAPIDS) == ()
    assert [p.split(" ")[0] for p in paths_not_offered(CASCADE_LAKE)] == ["bf16"]


@pytest.mark.parametrize(
    ("precision", "flags", "cuda", "warned"),
    [
        ("bf16", HASWELL, False, True),
        ("bf16", CASCADE_LAKE, False, True),
        ("bf16", SAPPHIRE_RAPIDS, False, False),  # native bf16
        ("bf16", HASWELL, True, False),  # on a GPU the CPU's flags do not matter
        ("fp32", HASWELL, False, False),
        ("int8", HASWELL, False, False),
    ],
)
def test_emulated_bf16_is_warned_of_with_the_faster_choice(
    precision: str, flags: frozenset[str], cuda: bool, warned: bool
) -> None:
    choice = choose_precision(precision, backend="torch" if precision != "int8" else "onnxruntime", cuda=cuda,
                              flags=flags)  # fmt: skip
    assert bool(choice.warning) == warned
    if warned:
        assert choice.warning.startswith("--precision bf16: no amx_bf16/avx512_bf16 here")
        assert "--precision fp32 (or auto) is faster" in choice.warning
    if not cuda:
        assert precision_warning(precision, flags) == choice.warning


def test_precision_names_have_one_home() -> None:
    with pytest.raises(ConfigError, match="expected one of auto, fp32, fp16, bf16, int8"):
        check_precision("int4")
    with pytest.raises(ConfigError, match="torch has no int8 path"):
        RunnerSpec(backend="torch", precision="int8")
    with pytest.raises(ConfigError, match="tensorrt has no bf16 path"):
        RunnerSpec(backend="tensorrt", precision="bf16")
    assert RunnerSpec(precision="auto").precision == "auto"


@pytest.mark.parametrize("costs", [{"x2": float("nan"), "x3": -0.01}, {"x2": -0.01, "x3": float("nan")}])
def test_auto_never_takes_a_path_whose_cost_is_nan(costs: dict[str, float]) -> None:
    """A NaN cost is not a measurement within the limit, wherever it stands among the scales
    (Python's max keeps or drops a NaN depending on its position)."""
    choice = choose_cpu_path(cpu_paths(ZEN4), lambda p: costs)
    assert choice.precision == "fp32"
    costly = [line for line in choice.passed_over if "costs" in line]
    assert len(costly) == 2 and all("costs nan dB" in line for line in costly)

"""--precision auto: CPU flags -> candidate paths -> the first within the quality limit."""

from __future__ import annotations

import pytest

from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec
from vdsr_deploy.environment import cpu_flags
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.precision.decision import (
    INT8_AUTO_BLOCKED,
    CpuPath,
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


@pytest.mark.parametrize(
    "flags, expected",
    [
        (SAPPHIRE_RAPIDS, ["int8", "bf16", "fp32"]),  # INT8 measured faster than bf16 on AMX too
        (ZEN4, ["int8", "bf16", "fp32"]),
        (CASCADE_LAKE, ["int8", "fp32"]),  # no bf16 hardware: bf16 (emulated, slow) never offered
        (HASWELL, ["fp32"]),
        (frozenset(), ["fp32"]),
    ],
)
def test_cpu_paths_follow_the_flags_never_assumed(flags: frozenset[str], expected: list[str]) -> None:
    paths = cpu_paths(flags)
    assert [p.precision for p in paths] == expected
    assert paths[-1] == CpuPath("fp32", "onnxruntime", paths[-1].why)
    assert all(p.backend == ("torch" if p.precision == "bf16" else "onnxruntime") for p in paths)
    assert all(bool(p.auto_blocked) == (p.precision == "int8") for p in paths)  # INT8: opt-in only


def test_auto_never_takes_a_blocked_path_nor_builds_it() -> None:
    asked: list[str] = []

    def cost(path: CpuPath) -> dict[str, float]:
        asked.append(path.precision)
        return {"x2": 0.0, "x3": 0.0, "x4": 0.0}

    choice = choose_cpu_path(cpu_paths(SAPPHIRE_RAPIDS), cost)
    assert (choice.precision, choice.backend) == ("bf16", "torch")
    assert asked == ["bf16"]  # the blocked INT8 model is not even built for its cost
    assert choice.passed_over == (f"int8 ({INT8_AUTO_BLOCKED})",)
    assert "Set5 x2" in choice.describe() and "--precision int8" in choice.describe()
    assert choose_cpu_path(cpu_paths(CASCADE_LAKE), cost).precision == "fp32"


def test_auto_takes_the_first_path_within_the_limit_and_says_why() -> None:
    costs = {"int8": {"x2": -0.01, "x3": -0.02, "x4": -0.06}, "bf16": {"x2": -0.03, "x3": 0.01, "x4": -0.05}}
    asked: list[str] = []

    def cost(path: CpuPath) -> dict[str, float]:
        asked.append(path.precision)
        return costs[path.precision]

    paths = (
        CpuPath("int8", "onnxruntime", "int8 for this test"),  # not blocked here: the cost rule alone
        *cpu_paths(SAPPHIRE_RAPIDS)[1:],
    )
    choice = choose_cpu_path(paths, cost)
    assert (choice.precision, choice.backend) == ("bf16", "torch")
    assert asked == ["int8", "bf16"]  # fp32 needs no record
    assert len(choice.passed_over) == 1 and "int8" in choice.passed_over[0] and "0.060" in choice.passed_over[0]
    assert "x4 -0.050" in choice.reason and choice.requested == "auto"
    line = choice.describe()
    assert line.startswith("precision bf16 on torch, auto:") and "passed over" in line
    # reproducible: the same flags and records give the same choice
    assert choose_cpu_path(paths, lambda p: costs[p.precision]) == choice


def test_auto_falls_back_to_fp32_when_no_path_qualifies() -> None:
    paths = (CpuPath("int8", "onnxruntime", "int8 for this test"), *cpu_paths(ZEN4)[1:])
    choice = choose_cpu_path(paths, lambda p: "build failed" if p.precision == "int8" else {"x2": -0.2})
    assert choice.precision == "fp32" and choice.backend == "onnxruntime"
    assert choice.passed_over == ("int8 (build failed)", f"bf16 (costs 0.200 dB > {MAX_AUTO_COST_DB:g}: x2 -0.200)")


def test_choose_precision_cuda_named_backend_and_concrete() -> None:
    never = lambda p: pytest.fail("no cost should be read")  # noqa: E731
    assert choose_precision("auto", backend="tensorrt", cuda=True, quality_cost=never).precision == "fp16"
    assert choose_precision("fp32", backend="torch", cuda=False, flags=SAPPHIRE_RAPIDS).describe() == (
        "precision fp32 on torch (as asked)"
    )
    # a named backend restricts auto to that backend's precisions (PyTorch has no INT8)
    choice = choose_precision(
        "auto",
        backend="torch",
        cuda=False,
        flags=CASCADE_LAKE,
        quality_cost=lambda p: {"x2": 0.0},
        supported=REGISTRY["torch"].precisions,
    )
    assert (choice.precision, choice.backend) == ("fp32", "torch")
    choice = choose_precision(
        "auto",
        backend="onnxruntime",
        cuda=False,
        flags=SAPPHIRE_RAPIDS,
        quality_cost=lambda p: {"x2": 0.0},
        supported=REGISTRY["onnxruntime"].precisions,
    )
    assert (choice.precision, choice.backend) == ("fp32", "onnxruntime")  # INT8 is opt-in
    assert choice.passed_over == ("bf16 (not run by --backend onnxruntime)", f"int8 ({INT8_AUTO_BLOCKED})")


def test_an_fp32_decision_says_what_it_passed_over_and_why() -> None:
    """No "no faster path" claim: on a CPU without VNNI or bf16 hardware the faster paths are
    named with why they were not tried (issue 26: INT8 was faster there, unmeasured by auto)."""
    choice = choose_precision("auto", backend="auto", cuda=False, flags=HASWELL, quality_cost=lambda p: {"x2": 0.0})
    assert choice.precision == "fp32" and "faster path" not in choice.describe()
    int8, bf16 = choice.passed_over
    assert int8.startswith("int8 (not tried: no amx_int8/avx512_vnni/avx_vnni here") and "--precision int8" in int8
    assert bf16 == "bf16 (no amx_bf16/avx512_bf16 here: bf16 is emulated, slower than fp32)"
    assert choice.describe_lines() == [
        "precision fp32 on onnxruntime, auto: the reference (exact)",
        f"passed over: {int8}",
        f"passed over: {bf16}",
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
    paths = (CpuPath("int8", "onnxruntime", "int8 for this test"), *cpu_paths(ZEN4)[1:])
    choice = choose_cpu_path(paths, lambda p: costs)
    assert choice.precision == "fp32"
    assert len(choice.passed_over) == 2 and all("costs nan dB" in line for line in choice.passed_over)

"""Measured ``--precision auto``: each eligible path timed once per machine, cached, the
fastest taken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.errors import VdsrError
from vdsr_deploy.precision.decision import CpuPath
from vdsr_deploy.runner import Runner, RunnerInfo
from vdsr_deploy.runtime import speed
from vdsr_deploy.runtime.cache import clear_cache

FP32 = CpuPath("fp32", "onnxruntime", "reference")
INT8 = CpuPath("int8", "onnxruntime", "int8")
OV_INT8 = CpuPath("int8", "openvino", "int8 on openvino")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CostlyRunner(Runner):
    """Each call costs ``seconds`` on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds, self.calls = clock, seconds, 0

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("fake", "cpu", "fp32")

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.clock.now += self.seconds
        self.calls += 1
        return batch.copy()


def opener(clock: FakeClock, seconds: dict[str, float], opened: list[str]) -> speed.OpenPath:
    def open_path(path: CpuPath) -> Runner:
        opened.append(path.key)
        if path.key not in seconds:
            raise VdsrError(f"{path.key} does not open here")
        return CostlyRunner(clock, seconds[path.key])

    return open_path


def test_time_paths_gives_megapixels_per_second_and_names_failures() -> None:
    clock, opened = FakeClock(), []
    open_path = opener(clock, {"onnxruntime-fp32": 0.5, "onnxruntime-int8": 0.25}, opened)
    speeds, failed = speed.time_paths([FP32, INT8, OV_INT8], open_path, seconds=1.0, side=100, clock=clock)
    assert speeds == pytest.approx({"onnxruntime-fp32": 0.01 / 0.5, "onnxruntime-int8": 0.01 / 0.25})
    assert failed == {"openvino-int8": "openvino-int8 does not open here"}
    assert opened == ["onnxruntime-fp32", "onnxruntime-int8", "openvino-int8"]


def test_a_slow_path_is_called_at_least_once_per_round() -> None:
    clock = FakeClock()
    runner = CostlyRunner(clock, 5.0)
    speeds, _ = speed.time_paths([FP32], lambda path: runner, seconds=1.0, rounds=2, side=10, clock=clock)
    assert runner.calls == 1 + 2  # warm-up, then one call in each round
    assert speeds["onnxruntime-fp32"] == pytest.approx(100 / 5.0 / 1e6)


def key(**changes: object) -> dict[str, object]:
    base = speed.speed_key(network="abc", threads=0, int8_recipe={"scales": (2, 3)}, versions={"onnxruntime": "1.0"})
    return {**base, **changes}


def test_the_table_is_measured_once_then_read_from_the_cache(tmp_path: Path) -> None:
    clock, opened = FakeClock(), []
    open_path = opener(clock, {"onnxruntime-fp32": 0.5, "onnxruntime-int8": 0.25}, opened)
    first = speed.speed_table([FP32, INT8], open_path, tmp_path, key())
    assert first.note.startswith("measured now: 2 paths timed in ") and "cached in" in first.note
    assert len(opened) == 2
    second = speed.speed_table([FP32, INT8], open_path, tmp_path, key())
    assert len(opened) == 2  # nothing opened: read from the record
    assert second.mpx_per_s == first.mpx_per_s and "read from" in second.note
    record = speed.record_path(tmp_path, key())
    assert record.name.startswith("vdsr-cpu-speed-") and json.loads(record.read_text())["key"] == key()
    # another machine, core count or runtime version: measured again, in its own record
    speed.speed_table([FP32, INT8], open_path, tmp_path, key(cores=64))
    assert len(opened) == 4
    # a path the record lacks: measured, and merged into the record
    speed.speed_table([FP32, OV_INT8], opener(clock, {"onnxruntime-fp32": 0.5, "openvino-int8": 0.1}, opened),
                      tmp_path, key())  # fmt: skip
    assert set(json.loads(record.read_text())["mpx_per_s"]) == {"onnxruntime-fp32", "onnxruntime-int8", "openvino-int8"}
    assert clear_cache(tmp_path).removed == 2  # vdsr cache --clear removes the records


def test_a_damaged_record_is_measured_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, opened = FakeClock(), []
    open_path = opener(clock, {"onnxruntime-fp32": 0.5}, opened)
    record = speed.record_path(tmp_path, key())
    record.write_text('{"key": {"record": 1, "cp')
    table = speed.speed_table([FP32], open_path, tmp_path, key())
    assert opened == ["onnxruntime-fp32"] and table.note.startswith("measured now")
    assert "unreadable speed record" in caplog.text
    assert json.loads(record.read_text())["key"] == key()  # healed


def test_no_timable_path_is_an_error_with_the_reasons(tmp_path: Path) -> None:
    with pytest.raises(VdsrError, match="no path could be timed: onnxruntime-fp32: onnxruntime-fp32 does not open"):
        speed.speed_table([FP32], opener(FakeClock(), {}, []), tmp_path, key())


def test_an_unwritable_cache_still_gives_the_measurement(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    table = speed.speed_table([FP32], opener(FakeClock(), {"onnxruntime-fp32": 0.5}, []), blocker, key())
    assert table.mpx_per_s["onnxruntime-fp32"] > 0 and "not cached" in table.note


def test_auto_on_the_cpu_measures_the_real_paths_once(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end with real runtimes: INT8 allowed (as a recipe within the limits would be),
    every eligible path is timed once, the fastest is taken, and the next resolution reads
    the record without opening a runner."""
    from vdsr_deploy.runtime import prepare, resolve

    monkeypatch.setattr(resolve, "INT8_AUTO_BLOCKED", "")
    monkeypatch.setattr(resolve, "_unavailable", lambda path: None if path.backend == "onnxruntime" else "off here")
    monkeypatch.setattr("vdsr_deploy.precision.decision.cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(speed, "SECONDS_PER_PATH", 0.2)
    spec = RunnerSpec(precision="auto", weights=tiny_weights, engines_dir=tmp_path)
    resolved, choice = prepare.resolve_precision(spec)
    assert choice.measurement.startswith("measured now: 2 paths timed")
    assert (resolved.backend, resolved.precision) in {("onnxruntime", "int8"), ("onnxruntime", "fp32")}
    assert (resolved.onnx is not None) == (resolved.precision == "int8")  # the INT8 model it measured
    assert "measured fastest here" in choice.reason
    assert len(list(tmp_path.glob("vdsr-cpu-speed-*.json"))) == 1

    def no_timing(*args: object, **kwargs: object) -> object:
        raise AssertionError("a cached decision must not time anything")

    monkeypatch.setattr(speed, "time_paths", no_timing)
    again, choice_again = prepare.resolve_precision(spec)
    assert again == resolved and "read from" in choice_again.measurement
    with prepare.open_runner(again, tiling=prepare.TileConfig(tile=0), batch=1) as runner:
        assert runner.info.precision == resolved.precision

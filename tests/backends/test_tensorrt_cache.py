"""Engine building and caching logic that needs no GPU: configs, keys, names, sidecars,
matching, selection, inspector-JSON parsing, and the errors without TensorRT.

(These files sit flat in tests/backends: pytest puts a test's folder on sys.path, and a
folder named ``tensorrt`` there would import as TensorRT.)"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from vdsr_deploy import __version__
from vdsr_deploy.backends.tensorrt import builder as trt_builder
from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.tensorrt import library as trt_library
from vdsr_deploy.backends.tensorrt.build_config import DEFAULT_WHOLE_IMAGE_MAX_SIDE, EngineBuildConfig
from vdsr_deploy.backends.tensorrt.builder import (
    LayerPrecisions,
    check_io_names,
    check_onnx_precision,
    check_precision,
    network_creation_flags,
    parse_failure_message,
    summarize_inspector_json,
    type_tokens,
)
from vdsr_deploy.backends.tensorrt.cache import EngineCandidate, EngineRecord, find_engine, select_engine
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.keys import (
    BUILD_RECIPE,
    engine_file_name,
    engine_key,
    sidecar_path,
    slug,
    timing_cache_path,
)
from vdsr_deploy.backends.tensorrt.library import (
    TensorRTLog,
)
from vdsr_deploy.backends.tensorrt.matching import (
    check_profile_covers,
    environment_reasons,
    explicit_engine_reasons,
    mismatch_reasons,
)
from vdsr_deploy.backends.tensorrt.sidecar import SIDECAR_SCHEMA, EngineSidecar, read_sidecar, write_sidecar
from vdsr_deploy.errors import (
    BackendUnavailableError,
    BuildError,
    ConfigError,
    EngineMismatchError,
    InvalidInputError,
)
from vdsr_deploy.fileops import file_sha256
from vdsr_deploy.io_names import ShapeProfile, profile_for_tiles
from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runtime import prepare as factory

H100 = DeviceInfo(
    index=0, name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), multiprocessors=132
)
A100 = DeviceInfo(
    index=0, name="NVIDIA A100-SXM4-40GB", compute_capability=(8, 0), multiprocessors=108
)
TRT = "10.13.0.35"
CUDA_MAJOR = 12
ONNX_SHA = "ab" * 32
OTHER_SHA = "cd" * 32
WEIGHTS_SHA = "ef" * 32
TILES = TileConfig(tile=256, halo=20)

needs_no_tensorrt = pytest.mark.skipif(
    trt_library.tensorrt_available(),
    reason="TensorRT is installed here: the no-TensorRT path cannot be seen",
)


def make_config(**overrides: object) -> EngineBuildConfig:
    values: dict[str, object] = {"profile": profile_for_tiles(TILES, 8)}
    values.update(overrides)
    return EngineBuildConfig(**values)  # type: ignore[arg-type]


def make_sidecar(
    config: EngineBuildConfig | None = None, gpu: DeviceInfo = H100, **overrides: object
) -> EngineSidecar:
    config = config or make_config()
    key = engine_key(
        str(overrides.pop("onnx_sha256", ONNX_SHA)),
        config,
        gpu,
        str(overrides.pop("tensorrt_version", TRT)),
        cuda_major=CUDA_MAJOR,
    )
    sidecar = EngineSidecar.from_key(
        key,
        engine_file=engine_file_name(key),
        engine_sha256="00" * 32,
        engine_bytes=1234,
        onnx_file="vdsr-fp16.onnx",
        weights_sha256=WEIGHTS_SHA,
        build_seconds=12.5,
        layers=22,
        fp16_layers=20,
        created="2026-01-01T00:00:00+00:00",
        timing_cache="engines/timing.cache",
    )
    return dataclasses.replace(sidecar, **overrides)  # type: ignore[arg-type]


# -- configuration ---------------------------------------------------------------------


def test_profile_comes_from_the_tiler_config() -> None:
    config = EngineBuildConfig.for_tiles(TILES, 8)
    assert config.profile == profile_for_tiles(TILES, 8)
    assert config.profile.min == (1, 1, 1, 1)
    assert config.profile.opt == config.profile.max == (8, 1, 256, 256)
    assert config.profiles == (config.profile,)  # one per execution context; one by default
    assert EngineBuildConfig.for_tiles(TILES, 8, contexts=2).profiles == (config.profile, config.profile)
    assert config.precision == "fp16" and config.tf32


def test_whole_image_profile_needs_max_side() -> None:
    with pytest.raises(ConfigError, match="max_side"):
        EngineBuildConfig.for_tiles(TileConfig(tile=0), 1)
    config = EngineBuildConfig.for_tiles(TileConfig(tile=0), 1, max_side=1024)
    assert config.profile.max == (1, 1, 1024, 1024)


def test_fp32_switches_tf32_off() -> None:
    assert not make_config(precision="fp32").tf32


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("precision", "int8", "precision"),
        ("contexts", 0, "contexts"),
        ("contexts", 9, "contexts"),
        ("workspace_bytes", 1000, "workspace_bytes"),
        ("optimization_level", 6, "optimization_level"),
        ("profile", (1, 1, 8, 8), "ShapeProfile"),
    ],
)
def test_config_is_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(**{field: value})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config().precision = "fp32"  # type: ignore[misc]


# -- keys and names --------------------------------------------------------------------


def test_engine_name_encodes_every_build_parameter() -> None:
    name = engine_file_name(engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=12))
    assert name == (
        "vdsr-abababababab_fp16_1x1x1-8x256x256-8x256x256_x1_ws1024M_o3"
        f"_nvidia-h100-80gb-hbm3-sm90x132_cu12_trt10.13.0.35_v{__version__}r{BUILD_RECIPE}.engine"
    )
    fp32 = engine_file_name(engine_key(ONNX_SHA, make_config(precision="fp32"), H100, TRT, cuda_major=CUDA_MAJOR))
    assert "_fp32-notf32_" in fp32


@pytest.mark.parametrize(
    "change",
    [
        {"config": {"precision": "fp32"}},
        {"config": {"contexts": 2}},
        {"config": {"workspace_bytes": 2 << 30}},
        {"config": {"optimization_level": 5}},
        {"config": {"profile": profile_for_tiles(TileConfig(tile=512), 8)}},
        {"config": {"profile": profile_for_tiles(TILES, 4)}},
        {"gpu": A100},
        {"gpu": DeviceInfo(index=0, name=H100.name, compute_capability=(9, 1))},
        {"gpu": dataclasses.replace(H100, multiprocessors=66)},  # a MIG slice
        {"trt": "10.14.1"},
        {"cuda": 13},
        {"onnx": OTHER_SHA},
        {"key": {"package_version": "9.9.9"}},
        {"key": {"build_recipe": BUILD_RECIPE + 1}},
    ],
)
def test_every_parameter_changes_the_name_and_the_match(change: dict[str, Any]) -> None:
    base = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    config = make_config(**change.get("config", {}))
    other = engine_key(
        str(change.get("onnx", ONNX_SHA)),
        config,
        change.get("gpu", H100),
        str(change.get("trt", TRT)),
        cuda_major=int(change.get("cuda", CUDA_MAJOR)),
    )
    other = dataclasses.replace(other, **change.get("key", {}))
    assert engine_file_name(other) != engine_file_name(base)
    assert mismatch_reasons(other, base)  # and the cache never loads one for the other


def test_slug_and_paths(tmp_path: Path) -> None:
    assert slug("NVIDIA GeForce RTX 4090 (laptop)") == "nvidia-geforce-rtx-4090-laptop"
    assert slug("  ") == "unknown"
    assert sidecar_path(tmp_path / "a.engine") == tmp_path / "a.json"
    cache = timing_cache_path(tmp_path, H100, TRT)
    assert cache.parent == tmp_path and "sm90" in cache.name and TRT in cache.name


# -- sidecar ---------------------------------------------------------------------------


def test_sidecar_round_trip(tmp_path: Path) -> None:
    sidecar = make_sidecar()
    path = tmp_path / "e.json"
    write_sidecar(path, sidecar)
    data = json.loads(path.read_text())
    assert data["onnx"]["weights_sha256"] == WEIGHTS_SHA
    assert data["gpu"] == {
        "name": H100.name,
        "compute_capability": [9, 0],
        "multiprocessors": 132,
    }
    assert data["cuda_major"] == CUDA_MAJOR and data["build_options"]["recipe"] == BUILD_RECIPE
    assert data["build_options"]["strongly_typed"] is True
    assert data["profiles"][0] == {
        "min": [1, 1, 1, 1],
        "opt": [8, 1, 256, 256],
        "max": [8, 1, 256, 256],
    }
    assert read_sidecar(path) == sidecar
    assert read_sidecar(path).key == engine_key(
        ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR
    )


def test_missing_sidecar_is_a_mismatch(tmp_path: Path) -> None:
    with pytest.raises(EngineMismatchError, match="sidecar is missing"):
        read_sidecar(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", '{"schema": 99}', '{"schema": 1, "engine": {}}']
)
def test_corrupt_sidecar_is_a_mismatch(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(EngineMismatchError, match="unreadable engine sidecar"):
        read_sidecar(path)


# -- matching and selection ------------------------------------------------------------


def test_matching_key_has_no_reasons() -> None:
    key = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    assert mismatch_reasons(key, key) == []


def test_mismatch_reasons_explain_each_difference() -> None:
    wanted = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    assert mismatch_reasons(engine_key(ONNX_SHA, make_config(), A100, TRT, cuda_major=CUDA_MAJOR), wanted) == [
        "built for GPU NVIDIA A100-SXM4-40GB (compute 8.0) but this GPU is NVIDIA H100 80GB HBM3 "
        "(compute 9.0)"
    ]
    assert mismatch_reasons(engine_key(ONNX_SHA, make_config(), H100, "10.8.0.43", cuda_major=CUDA_MAJOR), wanted) == [
        f"built with TensorRT 10.8.0.43 but this is TensorRT {TRT}"
    ]
    (onnx_reason,) = mismatch_reasons(engine_key(OTHER_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR), wanted)
    assert "another ONNX" in onnx_reason and OTHER_SHA[:12] in onnx_reason
    small = make_config(profile=profile_for_tiles(TileConfig(tile=128), 8))
    (profile_reason,) = mismatch_reasons(engine_key(ONNX_SHA, small, H100, TRT, cuda_major=CUDA_MAJOR), wanted)
    assert "8x128x128" in profile_reason and "8x256x256" in profile_reason
    fp32_reasons = mismatch_reasons(
        engine_key(ONNX_SHA, make_config(precision="fp32"), H100, TRT, cuda_major=CUDA_MAJOR), wanted
    )
    assert fp32_reasons == [
        "built in fp32, fp16 was asked for",
        "built with TF32 off, on was asked for",
    ]
    everything = mismatch_reasons(engine_key(OTHER_SHA, small, A100, "9.0", cuda_major=CUDA_MAJOR), wanted)
    assert [r.split(" ")[2] for r in everything[:2]] == ["GPU", "TensorRT"]  # environment first


def test_environment_reasons_only_look_at_gpu_and_tensorrt() -> None:
    sidecar = make_sidecar(config=make_config(contexts=1))
    assert environment_reasons(sidecar, H100, TRT) == []
    assert len(environment_reasons(sidecar, A100, "11.0.0")) == 2


def _candidate(tmp_path: Path, sidecar: EngineSidecar, exists: bool = True) -> EngineCandidate:
    return EngineCandidate(
        engine=tmp_path / sidecar.engine_file, sidecar=sidecar, engine_exists=exists
    )


def test_select_engine_picks_only_an_exact_match(tmp_path: Path) -> None:
    wanted = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    exact = _candidate(tmp_path, make_sidecar())
    other_gpu = _candidate(tmp_path, make_sidecar(gpu=A100))
    selection = select_engine([other_gpu, exact], wanted)
    assert selection.match == exact.engine


def test_select_engine_reports_the_nearest_related_engine(tmp_path: Path) -> None:
    wanted = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    far = _candidate(tmp_path, make_sidecar(gpu=A100, tensorrt_version="9.0"))
    near = _candidate(tmp_path, make_sidecar(tensorrt_version="10.8.0.43"))
    selection = select_engine([far, near], wanted)
    assert selection.match is None and selection.nearest == near.engine
    assert selection.reasons == ("built with TensorRT 10.8.0.43 but this is TensorRT 10.13.0.35",)
    message = selection.explain(tmp_path)
    assert near.engine.name in message and "rebuild" in message


def test_select_engine_relates_by_weights_and_ignores_other_models(tmp_path: Path) -> None:
    wanted = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    reexported = _candidate(tmp_path, make_sidecar(onnx_sha256=OTHER_SHA))
    assert (
        select_engine([reexported], wanted, weights_sha256=WEIGHTS_SHA).nearest == reexported.engine
    )
    assert select_engine([reexported], wanted, weights_sha256="11" * 32).nearest is None
    assert select_engine([], wanted).match is None


def test_select_engine_never_picks_a_missing_engine_file(tmp_path: Path) -> None:
    wanted = engine_key(ONNX_SHA, make_config(), H100, TRT, cuda_major=CUDA_MAJOR)
    selection = select_engine([_candidate(tmp_path, make_sidecar(), exists=False)], wanted)
    assert selection.match is None and selection.reasons == ("its engine file is missing",)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """FP32 and FP16 ONNX files of a tiny VDSR (written without ONNX Runtime verification)."""
    import onnx
    import torch

    from vdsr_deploy.export.onnx import build_graph, export_metadata
    from vdsr_deploy.model.network import VDSR

    torch.manual_seed(0)
    model = VDSR(depth=3, channels=4)
    folder = tmp_path_factory.mktemp("onnx")
    paths = []
    for precision in ("fp32", "fp16"):
        path = folder / f"tiny-{precision}.onnx"
        onnx.save(build_graph(model, precision, export_metadata(model, None, precision)), str(path))
        paths.append(path)
    return paths[0], paths[1]


def _cache_engine(
    folder: Path, onnx_path: Path, config: EngineBuildConfig, gpu: DeviceInfo
) -> Path:
    metadata = onnx_metadata(onnx_path)
    sidecar = make_sidecar(
        config=config,
        gpu=gpu,
        onnx_sha256=file_sha256(onnx_path),
        weights_sha256=metadata[MetadataKey.WEIGHTS_SHA256],
        engine_sha256=hashlib.sha256(b"engine").hexdigest(),
        engine_bytes=len(b"engine"),
    )
    path = folder / sidecar.engine_file
    path.write_bytes(b"engine")
    write_sidecar(sidecar_path(path), sidecar)
    return path


def test_find_engine(tmp_path: Path, tiny_onnx: tuple[Path, Path]) -> None:
    _, fp16 = tiny_onnx
    config = make_config(profile=profile_for_tiles(TileConfig(tile=64, halo=8), 4))
    assert find_engine(tmp_path, fp16, config, H100, TRT, cuda_major=CUDA_MAJOR) is None  # nothing cached
    other = _cache_engine(tmp_path, fp16, config, A100)
    (tmp_path / "notes.json").write_text('{"unrelated": true}')  # not a sidecar: skipped
    with pytest.raises(EngineMismatchError, match="built for GPU NVIDIA A100") as raised:
        find_engine(tmp_path, fp16, config, H100, TRT, cuda_major=CUDA_MAJOR)
    assert other.name in str(raised.value)
    exact = _cache_engine(tmp_path, fp16, config, H100)
    assert find_engine(tmp_path, fp16, config, H100, TRT, cuda_major=CUDA_MAJOR) == exact
    bigger = make_config(profile=profile_for_tiles(TileConfig(tile=128, halo=8), 4))
    with pytest.raises(EngineMismatchError, match="built for profiles"):
        find_engine(tmp_path, fp16, bigger, H100, TRT, cuda_major=CUDA_MAJOR)
    with pytest.raises(InvalidInputError, match="not found"):
        find_engine(tmp_path, tmp_path / "missing.onnx", config, H100, TRT, cuda_major=CUDA_MAJOR)


def test_onnx_precision_must_match_the_engine(tiny_onnx: tuple[Path, Path]) -> None:
    fp32, fp16 = tiny_onnx
    check_onnx_precision(onnx_metadata(fp16), "fp16", fp16)
    with pytest.raises(ConfigError, match="is the fp32 ONNX, but a fp16 engine"):
        check_onnx_precision(onnx_metadata(fp32), "fp16", fp32)
    check_onnx_precision({}, "fp16", fp32)  # a foreign ONNX: the inspector check decides


# -- inspector JSON --------------------------------------------------------------------

TRT10_FP16 = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to conv1",
            "LayerType": "Reformat",
            "Inputs": [
                {
                    "Name": "input",
                    "Dimensions": [8, 1, 256, 256],
                    "Format/Datatype": "Row major linear FP32",
                }
            ],
            "Outputs": [
                {
                    "Name": "x",
                    "Dimensions": [8, 1, 256, 256],
                    "Format/Datatype": "Row major linear FP16 format",
                }
            ],
        },
        {
            "Name": "conv1 + relu1",
            "LayerType": "CaskConvolution",
            "Inputs": [
                {"Name": "x", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}
            ],
            "Outputs": [
                {
                    "Name": "relu1",
                    "Format/Datatype": "Channel major FP16 format where channel % 8 == 0",
                }
            ],
            "Weights": {"Type": "Half", "Count": 576},
            "Bias": {"Type": "Half", "Count": 64},
        },
        {
            "Name": "global_residual",
            "LayerType": "PointWiseV2",
            "Inputs": [{"Name": "input", "Format/Datatype": "Row major linear FP32"}],
            "Outputs": [{"Name": "output", "Format/Datatype": "Row major linear FP32"}],
        },
    ],
    "Bindings": ["input", "output"],
}

TRT11_FP16 = {
    "Layers": [
        {
            "Name": "conv1",
            "Inputs": [
                {"Name": "x", "DataType": "Half", "Format": "Channel major FP16 format (kHWC8)"}
            ],
            "Outputs": [
                {"Name": "y", "DataType": "Half", "Format": "Channel major FP16 format (kHWC8)"}
            ],
        },
        {
            "Name": "add",
            "Inputs": [
                {"Name": "input", "DataType": "Float", "Format": "Row major linear FP32 format"}
            ],
        },
    ],
    "I/O Tensors": [{"Name": "input", "IOMode": "Input", "DataType": "Float"}],
}

FP32_ONLY = {
    "Layers": [
        {
            "Name": "conv1 + relu1",
            "Inputs": [{"Format/Datatype": "Row major linear FP32"}],
            "Outputs": [{"Format/Datatype": "Float"}],
            "Weights": {"Type": "Float", "Count": 576},
        }
    ]
}

DYNAMIC_NO_CONTEXT = {
    "Layers": [
        {
            "Name": "conv1",
            "Inputs": [
                {"Dimensions": [-1, 1, -1, -1], "Format/Datatype": "N/A due to dynamic shapes"}
            ],
            "Weights": {"Type": "Half", "Count": 576},
        }
    ]
}


def test_type_tokens() -> None:
    assert type_tokens("Channel major FP16 format where channel % 8 == 0") == {"fp16"}
    assert type_tokens("float16") == {"fp16"}
    assert type_tokens("Half") == {"fp16"}
    assert type_tokens("Float") == {"fp32"}
    assert type_tokens("Row major linear FP32") == {"fp32"}
    assert type_tokens("N/A due to dynamic shapes") == set()
    assert type_tokens("Thirty-two wide channel vectorized row major Int8 format.") == {"int8"}


@pytest.mark.parametrize(
    ("data", "layers", "fp16", "fp32"),
    [
        (TRT10_FP16, 3, 2, 2),
        (TRT11_FP16, 2, 1, 1),
        (FP32_ONLY, 1, 0, 1),
        (DYNAMIC_NO_CONTEXT, 1, 1, 0),
    ],
)
def test_inspector_json_counts_fp16_layers(
    data: dict[str, object], layers: int, fp16: int, fp32: int
) -> None:
    summary = summarize_inspector_json(json.dumps(data))
    assert (summary.layers, summary.fp16_layers, summary.fp32_layers, summary.detailed) == (
        layers,
        fp16,
        fp32,
        True,
    )


def test_inspector_names_only_and_garbage() -> None:
    summary = summarize_inspector_json(json.dumps({"Layers": ["conv1 + relu1", "global_residual"]}))
    assert summary == LayerPrecisions(layers=2, fp16_layers=0, fp32_layers=0, detailed=False)
    with pytest.raises(BuildError, match="no valid JSON"):
        summarize_inspector_json("{")
    with pytest.raises(BuildError, match="no 'Layers' list"):
        summarize_inspector_json('{"Bindings": []}')


def test_check_precision_fails_loudly() -> None:
    fp16 = summarize_inspector_json(json.dumps(TRT10_FP16))
    fp32 = summarize_inspector_json(json.dumps(FP32_ONLY))
    check_precision(fp16, "fp16")
    check_precision(fp32, "fp32")
    with pytest.raises(BuildError, match="contains no FP16 layer"):
        check_precision(fp32, "fp16")
    with pytest.raises(BuildError, match="fp32 engine contains 2 FP16 layers"):
        check_precision(fp16, "fp32")
    with pytest.raises(BuildError, match="layer names only"):
        check_precision(
            LayerPrecisions(layers=2, fp16_layers=0, fp32_layers=0, detailed=False), "fp16"
        )


# -- builder helpers -------------------------------------------------------------------


def test_network_flags_strongly_typed_when_available() -> None:
    assert network_creation_flags(1) == 2  # TensorRT 10.x: STRONGLY_TYPED is bit 1
    assert network_creation_flags(None) == 0  # a TensorRT without the flag: always strongly typed


def test_io_names_and_parser_errors() -> None:
    check_io_names(["input"], ["output"])
    with pytest.raises(BuildError, match="expected one input 'input'"):
        check_io_names(["x"], ["output"])
    message = parse_failure_message(Path("m.onnx"), ["node conv1: bad", "node relu1: worse\n"])
    assert (
        "2 error(s)" in message
        and "(1) node conv1: bad" in message
        and "(2) node relu1: worse" in message
    )


def test_build_code_never_uses_apis_tensorrt_11_removed() -> None:
    removed = {
        "FP16",
        "INT8",
        "BF16",
        "OBEY_PRECISION_CONSTRAINTS",
        "platform_has_fast_fp16",
        "int8_calibrator",
    }
    tree = ast.parse(Path(trt_builder.__file__).read_text())
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not used & removed
    assert "STRONGLY_TYPED" in used


def test_tensorrt_log_collects_errors_only() -> None:
    log = TensorRTLog()
    assert log.summary() == "TensorRT logged no error message"
    with log.capturing():
        log.record(2, "a warning")
        log.record(1, "first error")
        log.record(0, "internal error")
    assert log.errors == ["first error", "internal error"]
    assert log.summary() == "first error | internal error"
    with log.capturing():
        assert log.errors == []


def test_check_profile_covers() -> None:
    engine_profile = profile_for_tiles(TileConfig(tile=128, halo=8), 4)
    check_profile_covers(engine_profile, profile_for_tiles(TileConfig(tile=128, halo=8), 16), "e")
    with pytest.raises(ConfigError, match="up to 128x128 pixels, but this tiling feeds 256x256"):
        check_profile_covers(engine_profile, profile_for_tiles(TILES, 4), "e")
    picky = ShapeProfile(min=(1, 1, 32, 32), opt=(4, 1, 128, 128), max=(4, 1, 128, 128))
    with pytest.raises(ConfigError, match="at least 32x32"):
        check_profile_covers(picky, engine_profile, "e")


def test_engine_record_describe(tmp_path: Path) -> None:
    record = EngineRecord(
        path=tmp_path / "e.engine", sidecar=make_sidecar(), built=True, replaced=("r",)
    )
    described = record.describe()
    assert described["built"] is True and described["fp16_layers"] == 20
    assert described["gpu"] == "NVIDIA H100 80GB HBM3 (compute 9.0)" and described[
        "replaced_because"
    ] == ["r"]


# -- is TensorRT here? -----------------------------------------------------------------


def test_stub_only_tensorrt_is_not_tensorrt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubs = tmp_path / "stubs" / "tensorrt"
    stubs.mkdir(parents=True)
    (stubs / "__init__.pyi").write_text("class Builder: ...\n__version__: str\n")
    monkeypatch.syspath_prepend(str(stubs.parent))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # so the undo removes what the test imports
    monkeypatch.delitem(sys.modules, "tensorrt")
    importlib.invalidate_caches()
    if trt_library._probe_tensorrt()[0] is not None:
        pytest.skip("a real TensorRT shadows the stub folder")
    assert importlib.import_module("tensorrt").__spec__ is not None  # the trap: the import works
    assert not trt_library.tensorrt_available()
    assert "type stubs" in trt_library.tensorrt_status()
    with pytest.raises(BackendUnavailableError, match=r"tensorrt-stubs.*pip install"):
        trt_library.require_tensorrt()


def test_a_module_with_builder_and_version_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("tensorrt")
    fake.Builder = object  # type: ignore[attr-defined]
    fake.__version__ = "10.13.0.35"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert trt_library.tensorrt_available() and trt_library.require_tensorrt() == "10.13.0.35"


@needs_no_tensorrt
def test_without_tensorrt_building_says_so_in_one_sentence(
    tmp_path: Path, tiny_onnx: tuple[Path, Path]
) -> None:
    assert trt_library.tensorrt_status() == "not installed"
    config = make_config()
    for call in (
        lambda: trt_builder.build_engine(tiny_onnx[1], config, tmp_path),
        lambda: trt_builder.find_or_build_engine(tiny_onnx[1], config, tmp_path),
        lambda: factory.create_tensorrt_runner(
            onnx_path=tiny_onnx[1], engines_dir=tmp_path, tiling=TILES, batch=8
        ),
    ):
        with pytest.raises(BackendUnavailableError) as raised:
            call()
        message = str(raised.value)
        assert message.startswith("TensorRT is not usable here (not installed): pip install")
        assert "\n" not in message and "tensorrt-cu13" in message and "tensorrt-cu12" in message
    assert list(tmp_path.iterdir()) == []  # nothing half-built


def test_runner_factory_needs_an_onnx_or_an_engine(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an ONNX file"):
        factory.create_tensorrt_runner(onnx_path=None, engines_dir=tmp_path, tiling=TILES, batch=8)


def test_runner_factory_checks_a_given_engine_fits_the_tiles(tmp_path: Path) -> None:
    sidecar = make_sidecar(config=make_config(profile=profile_for_tiles(TileConfig(tile=128), 4)))
    path = tmp_path / sidecar.engine_file
    path.write_bytes(b"engine")
    write_sidecar(sidecar_path(path), sidecar)
    runner = factory.create_tensorrt_runner(
        onnx_path=None,
        engine_path=path,
        engines_dir=tmp_path,
        tiling=TileConfig(tile=128),
        batch=16,
    )
    assert runner.engine_profile.max == (4, 1, 128, 128)
    with pytest.raises(EngineMismatchError) as raised:
        factory.create_tensorrt_runner(
            onnx_path=None,
            engine_path=path,
            engines_dir=tmp_path,
            tiling=TILES,
            batch=4,
            precision="fp32",
            weights_sha256=OTHER_SHA,
        )
    message = str(raised.value)
    assert message.startswith(f"{path.name} does not fit this run: ")
    assert "built in fp16 but fp32 was asked for (pass --precision fp16 to use it)" in message
    assert "up to 128x128 pixels, but this tiling feeds 256x256" in message
    assert f"built from other weights (sha256 {WEIGHTS_SHA[:12]}, these are" in message
    assert message.endswith("leave out --engine to let the engine cache find or build one")
    # whole images of unknown size: only the precision is checked up front
    factory.create_tensorrt_runner(
        onnx_path=None, engine_path=path, engines_dir=tmp_path, tiling=TileConfig(tile=0), batch=1
    )


def test_explicit_engine_reasons_are_data() -> None:
    sidecar = make_sidecar()
    assert explicit_engine_reasons(sidecar, precision="fp16", profile=sidecar.profile) == []
    assert explicit_engine_reasons(
        sidecar, precision="fp16", profile=None, weights_sha256=WEIGHTS_SHA
    ) == []
    smaller = profile_for_tiles(TileConfig(tile=64), 32)  # a bigger batch is split: fits
    assert explicit_engine_reasons(sidecar, precision="fp16", profile=smaller) == []
    (reason,) = explicit_engine_reasons(sidecar, precision="fp32", profile=None)
    assert reason.startswith("it was built in fp16 but fp32 was asked for")


def _wing_imports(module: str) -> set[str]:
    """The modules of the TensorRT wing that ``module`` imports, at the top or inside a
    function, directly or through others of the wing."""
    package = "vdsr_deploy.backends.tensorrt"
    folder = Path(trt_builder.__file__).parent
    found: set[str] = set()
    pending = [module]
    while pending:
        tree = ast.parse((folder / f"{pending.pop()}.py").read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(package):
                continue
            names = [a.name for a in node.names] if node.module == package else [node.module]
            for name in names:
                short = str(name).removeprefix(package + ".")
                if (folder / f"{short}.py").is_file() and short not in found:
                    found.add(short)
                    pending.append(short)
    return found


def test_builder_and_runner_never_import_each_other() -> None:
    assert "runner" not in _wing_imports("builder")
    assert "builder" not in _wing_imports("runner")
    assert {"cache", "sidecar"} <= _wing_imports("builder")  # the walk sees the wing


def test_importing_needs_neither_tensorrt_nor_cuda() -> None:
    code = (
        "import sys, vdsr_deploy, vdsr_deploy.runtime.prepare, "
        "vdsr_deploy.backends.tensorrt.builder, vdsr_deploy.backends.tensorrt.runner, "
        "vdsr_deploy.backends.tensorrt.cuda\n"
        "heavy = [m for m in ('tensorrt', 'cuda', 'cuda.bindings', 'torch', 'onnx') if m in "
        "sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_no_tensorrt
def test_cli_build_without_tensorrt_is_one_sentence_and_exit_1(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app

    result = CliRunner().invoke(
        app, ["build", "--engines-dir", str(tmp_path), "--tile", "64", "--halo", "8"]
    )
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        "error: TensorRT is not usable here (not installed): pip install"
    )
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# -- the cache in ordinary use (builds faked below TensorRT's builder API) -------------


@dataclasses.dataclass
class FakeBuilds:
    """Counts engine builds; the "engine" is the build's own description."""

    count: int = 0


@pytest.fixture
def fake_builds(monkeypatch: pytest.MonkeyPatch) -> FakeBuilds:
    """TensorRT present, one H100, and builds that produce a small blob instantly."""
    builds = FakeBuilds()
    fake = types.ModuleType("tensorrt")
    fake.Builder = object  # type: ignore[attr-defined]
    fake.__version__ = TRT  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_library, "_SHARED_LOGGER", {"sink": TensorRTLog(), "logger": object()})
    monkeypatch.setattr(cuda, "require_device", lambda device=0: H100)
    monkeypatch.setattr(cuda, "runtime_version", lambda: 12080)

    def build_serialized(onnx_path: Path, config: EngineBuildConfig, *_: object) -> bytes:
        builds.count += 1
        return f"{onnx_path.name}|{config.precision}|{config.profile.max}".encode()

    def inspect(blob: bytes, config: EngineBuildConfig, *_: object) -> LayerPrecisions:
        fp16 = 3 if config.precision == "fp16" else 0
        return LayerPrecisions(layers=4, fp16_layers=fp16, fp32_layers=4 - fp16, detailed=True)

    monkeypatch.setattr(trt_builder, "_build_serialized", build_serialized)
    monkeypatch.setattr(trt_builder, "_inspect", inspect)
    return builds


def test_engines_for_other_precisions_and_batches_coexist(
    tmp_path: Path, tiny_onnx: tuple[Path, Path], fake_builds: FakeBuilds
) -> None:
    """The ordinary sequence that used to fail: an fp16 batch-4 engine is cached (vdsr
    build), then fp32 (the upscale default) and batch 8 are asked for."""
    fp32, fp16 = tiny_onnx

    def open_for(onnx_path: Path, precision: str, batch: int) -> Path:
        runner = factory.create_tensorrt_runner(
            onnx_path=onnx_path, engines_dir=tmp_path, tiling=TILES, batch=batch, precision=precision
        )
        return runner.engine_path

    first = open_for(fp16, "fp16", 4)
    assert fake_builds.count == 1
    as_fp32 = open_for(fp32, "fp32", 4)
    as_batch8 = open_for(fp16, "fp16", 8)
    assert fake_builds.count == 3
    assert len({first, as_fp32, as_batch8}) == 3
    assert all(path.is_file() and sidecar_path(path).is_file() for path in (first, as_fp32, as_batch8))
    assert open_for(fp16, "fp16", 4) == first and open_for(fp32, "fp32", 4) == as_fp32
    assert fake_builds.count == 3  # exact matches are reused, nothing rebuilt


def test_a_build_says_why_no_cached_engine_fitted(
    tmp_path: Path,
    tiny_onnx: tuple[Path, Path],
    fake_builds: FakeBuilds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, fp16 = tiny_onnx
    config = make_config(profile=profile_for_tiles(TileConfig(tile=64, halo=8), 4))
    first = trt_builder.find_or_build_engine(fp16, config, tmp_path)
    assert first.built and first.replaced == (f"no engine for this ONNX in {tmp_path}",)
    assert first.sidecar.multiprocessors == 132 and first.sidecar.cuda_major == 12
    again = trt_builder.find_or_build_engine(fp16, config, tmp_path)
    assert again.path == first.path and not again.built and fake_builds.count == 1
    # The same GPU model as another MIG slice, then another CUDA major: built, not loaded.
    monkeypatch.setattr(cuda, "require_device", lambda device=0: dataclasses.replace(H100, multiprocessors=66))
    slice_ = trt_builder.find_or_build_engine(fp16, config, tmp_path)
    assert slice_.built and slice_.path != first.path
    assert any("with 132 SMs but this one has 66" in r for r in slice_.replaced)
    monkeypatch.setattr(cuda, "require_device", lambda device=0: H100)
    monkeypatch.setattr(cuda, "runtime_version", lambda: 13000)
    cuda13 = trt_builder.find_or_build_engine(fp16, config, tmp_path)
    assert cuda13.built and any("built for CUDA 12 but this is CUDA 13" in r for r in cuda13.replaced)
    forced = trt_builder.find_or_build_engine(fp16, config, tmp_path, rebuild=True)
    assert forced.built and forced.path == cuda13.path and forced.replaced == ("rebuild asked for",)
    assert fake_builds.count == 4
    assert len(list(tmp_path.glob("*.engine"))) == 3


def test_whole_images_build_a_max_side_profile(
    tmp_path: Path, tiny_onnx: tuple[Path, Path], fake_builds: FakeBuilds
) -> None:
    _, fp16 = tiny_onnx
    runner = factory.create_tensorrt_runner(
        onnx_path=fp16, engines_dir=tmp_path, tiling=TileConfig(tile=0), batch=4, precision="fp16"
    )
    side = DEFAULT_WHOLE_IMAGE_MAX_SIDE
    assert runner.engine_profile.max == (1, 1, side, side)
    assert runner.engine_profile.min == (1, 1, 1, 1)
    bounded = factory.create_tensorrt_runner(
        onnx_path=fp16,
        engines_dir=tmp_path,
        tiling=TileConfig(tile=0),
        batch=2,
        precision="fp16",
        max_side=300,
    )
    assert bounded.engine_profile.max == (2, 1, 300, 300) and fake_builds.count == 2


def test_an_engine_from_an_older_sidecar_schema_is_rebuilt_or_refused(
    tmp_path: Path, tiny_onnx: tuple[Path, Path], fake_builds: FakeBuilds
) -> None:
    _, fp16 = tiny_onnx
    config = make_config(profile=profile_for_tiles(TileConfig(tile=64, halo=8), 4))
    first = trt_builder.find_or_build_engine(fp16, config, tmp_path)
    data = json.loads(sidecar_path(first.path).read_text())
    data["schema"] = 1
    sidecar_path(first.path).write_text(json.dumps(data))
    with pytest.raises(EngineMismatchError, match="written by another version of vdsr-deploy"):
        factory.create_tensorrt_runner(
            onnx_path=None,
            engine_path=first.path,
            engines_dir=tmp_path,
            tiling=TileConfig(tile=64, halo=8),
            batch=4,
        )
    rebuilt = trt_builder.find_or_build_engine(fp16, config, tmp_path)
    assert rebuilt.built and rebuilt.path == first.path  # same key: replaces the stale one
    assert read_sidecar(sidecar_path(first.path)).schema == SIDECAR_SCHEMA

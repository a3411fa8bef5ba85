"""INT8 recipes side by side: Set5/Set14 task-PSNR cost and `vdsr validate`'s edge check.

For each variant, a static INT8 QDQ model of the weights (default: the shipped ones) is
calibrated and quantized from their FP32 ONNX (:func:`vdsr_deploy.export.quantize.quantize_int8`),
then measured against ONNX Runtime FP32:

- the task-PSNR cost on Set5 and Set14 at x2/x3/x4 (the paper's protocol, whole images:
  :func:`vdsr_deploy.evaluation.run.prepare_items` and :func:`~vdsr_deploy.evaluation.run.score`);
- ``vdsr validate``'s check: the bundled sample and the generated edge cases
  (:func:`vdsr_deploy.parity.default_images`) upscaled at x2/x3/x4 (default tiling) and
  judged by the INT8 tolerance (:func:`vdsr_deploy.parity.compare_outputs`), with the
  margin of each limit that matters (max |diff|, max LSB, PSNR vs FP32);
- the cost on the held-out calibration tiles (what ``--precision auto`` reads);
- with ``--speed``: ONNX Runtime INT8 and FP32 on one 768x1024 input, side by side.

The FP32 reference outputs are computed once and cached (``--cache``), so a variant only
runs its INT8 model. A variant is ``key=value`` pairs joined by ``;``, e.g.
``float=1+2;method=percentile;pct=99.99;data=shipped``; keys: ``float`` (conv indices kept
FP32, ``+``-separated), ``blend`` (guard_share: how far the ReLU ranges widen towards the
contrast guard's), ``guard`` (guard_convs: conv indices whose ReLU output takes the full
guard range), ``method`` (minmax/percentile/entropy), ``pct``, ``per_channel``
(0/1), ``rr`` (reduce_range 0/1), ``bias`` (QuantizeBias 0/1), ``sym`` (symmetric
activations 0/1), ``ends`` (keep first/last conv FP32, 0/1), ``data`` (calibration data:
``recipe`` = what --precision int8 uses, ``shipped`` = the shipped tiles alone,
``guard+edges`` = recipe plus the 1-px line tiles of benchmarks/int8_edges.py), ``tiles``
(use only the first N shipped calibration tiles), ``backend`` (ort/openvino: which runtime
runs the INT8 model). ``default`` is :data:`vdsr_deploy.export.int8.DEFAULT_RECIPE`.

    nice -n 10 python benchmarks/int8_recipe.py --variant default --variant 'float=1' [--sets set5 --scales 2]

One JSON line per variant on stdout, appended to benchmarks/results/int8-recipe-YYYYMMDD.jsonl.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
from vdsr_deploy.evaluation.run import prepare_items, score
from vdsr_deploy.export.calibration import (
    SCALES,
    TILE,
    calibration_inputs,
    degraded,
    guard_inputs,
    load_calibration_set,
    quality_cost,
)
from vdsr_deploy.export.int8 import DEFAULT_RECIPE
from vdsr_deploy.export.onnx import ensure_onnx
from vdsr_deploy.export.quantize import QuantizeConfig, quantize_int8
from vdsr_deploy.imageio.folders import list_images
from vdsr_deploy.model.weights import load_weights
from vdsr_deploy.parity import TOLERANCE_INT8, RunOutput, compare_outputs, default_images, run_images
from vdsr_deploy.planes.pipeline import upscale_plane
from vdsr_deploy.planes.tiling import TileConfig

DATA = Path("/work/shared/data/val")
RESULTS = Path(__file__).resolve().parent / "results"
Infer = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def _luma(cells: NDArray[np.float64]) -> NDArray[np.float64]:
    return (16.0 + 219.0 * cells) / 255.0


def _edge_tiles() -> NDArray[np.float64]:
    """1-px lines on black and inverted (benchmarks/int8_edges.py's ``lines`` tiles)."""
    lines = np.zeros((TILE, TILE))
    lines[::6, :] = 1.0
    lines[:, 3::7] = 1.0
    return np.stack([_luma(lines), _luma(1.0 - lines)])


def parse_variant(spec: str) -> tuple[QuantizeConfig, dict[str, str]]:
    """A recipe and the data/backend options from ``key=value;...`` (see the module doc)."""
    recipe = DEFAULT_RECIPE
    # "split": the shipped tiles calibrate, the guard tiles widen the ReLU ranges by the
    # recipe's guard_share, as build_int8 does (with share 1 the same as "recipe")
    options = {"data": "split", "backend": "ort", "tiles": "0"}
    if spec == "default":
        return recipe, options
    for part in filter(None, spec.split(";")):
        key, _, value = part.partition("=")
        if key == "float":
            recipe = replace(recipe, float_convs=tuple(int(v) for v in value.split("+") if v))
        elif key == "method":
            recipe = replace(recipe, method=value)
        elif key == "blend":
            recipe = replace(recipe, guard_share=float(value))
            options["data"] = "split"
        elif key == "guard":
            recipe = replace(recipe, guard_convs=tuple(int(v) for v in value.split("+") if v))
            options["data"] = "split"
        elif key == "pct":
            recipe = replace(recipe, percentile=float(value))
        elif key in ("per_channel", "rr", "bias", "sym", "ends"):
            field = {"rr": "reduce_range", "bias": "quantize_bias", "sym": "symmetric_activations",
                     "ends": "keep_float_ends"}.get(key, key)  # fmt: skip
            recipe = replace(recipe, **{field: value == "1"})
        elif key in options:
            options[key] = value
        else:
            raise SystemExit(f"variant {spec!r}: unknown key {key!r}")
    return recipe, options


def planes_for(options: dict[str, str]) -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]]:
    """Calibration planes and guard planes (the latter only for ``blend``)."""
    calibration = load_calibration_set()
    count = int(options["tiles"])
    if count:
        calibration = replace(calibration, calibration=count)
    data = options["data"]
    if data == "split":
        return calibration_inputs(calibration, SCALES, guard=False), guard_inputs(SCALES)
    if data == "recipe":
        return calibration_inputs(calibration, SCALES), []
    if data == "guard+edges":
        edges = [degraded(_edge_tiles(), s)[i, 0] for i in range(2) for s in SCALES]
        return calibration_inputs(calibration, SCALES) + edges, []
    if data != "shipped":
        raise SystemExit(f"data: expected recipe, shipped or guard+edges, got {data!r}")
    return calibration_inputs(calibration, SCALES, guard=False), []


class Reference:
    """ONNX Runtime FP32 outputs, computed once per weights/set/scale and kept in ``cache``."""

    def __init__(self, fp32: Path, cache: Path, tag: str) -> None:
        self.fp32, self.cache, self.tag = fp32, cache, tag
        self._runner: OnnxRuntimeRunner | None = None

    def runner(self) -> OnnxRuntimeRunner:
        if self._runner is None:
            self._runner = OnnxRuntimeRunner(self.fp32).__enter__()
        return self._runner

    def outputs(self, name: str, make: Callable[[Infer], list[NDArray[np.float32]]]) -> list[NDArray[np.float32]]:
        path = self.cache / f"{self.tag}-{name}.npz"
        if path.is_file():
            with np.load(path) as data:
                return [data[f"a{i}"] for i in range(len(data.files))]
        arrays = make(lambda x: self.runner().infer(x))
        np.savez(path, **{f"a{i}": a for i, a in enumerate(arrays)})
        return arrays

    def close(self) -> None:
        if self._runner is not None:
            self._runner.__exit__(None, None, None)


def whole(infer_runner: Any) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
    def run(y: NDArray[np.float32]) -> NDArray[np.float32]:
        return upscale_plane(y, infer_runner, TileConfig(tile=0))

    return run


def set_costs(candidate: Any, reference: Reference, sets: list[str], scales: list[int]) -> dict[str, Any]:
    costs: dict[str, Any] = {}
    for name in sets:
        paths = list_images(DATA / name)
        for scale in scales:
            items = prepare_items(paths, [scale])

            def make(_infer: Infer, items: list[Any] = items) -> list[NDArray[np.float32]]:
                return [whole(reference.runner())(i.bicubic_y.astype(np.float32)) for i in items]

            feed = iter(reference.outputs(f"{name}-x{scale}", make))
            ref = score(items, lambda _y, feed=feed: next(feed))
            cand = score(items, whole(candidate))
            deltas = [c.psnr - r.psnr for c, r in zip(cand.images, ref.images, strict=True)]
            costs[f"{name}-x{scale}"] = {
                "fp32_psnr": round(ref.summaries[0].psnr, 4),
                "cost_db": round(cand.summaries[0].psnr - ref.summaries[0].psnr, 4),
                "worst_image_db": round(min(deltas), 4),
            }
    return costs


def edge_check(candidate: Any, reference: Reference, scales: list[int]) -> dict[str, Any]:
    images = default_images()
    tiling = TileConfig()
    per_scale: dict[str, Any] = {}
    for scale in scales:

        def make(_infer: Infer, scale: int = scale) -> list[NDArray[np.float32]]:
            return [o.y for o in run_images(images, reference.runner(), scale=scale, tiling=tiling, batch=4)]

        ref = reference.outputs(f"edges-x{scale}", make)
        cand = run_images(images, candidate, scale=scale, tiling=tiling, batch=4)
        pair = compare_outputs(
            "int8", images, [RunOutput(y) for y in ref], cand, TOLERANCE_INT8, tolerance_class="int8"
        )
        figures = pair.figures
        assert figures is not None
        q8 = figures.quant(8)
        pattern = next(i for i in pair.images if i.name == "edges-64x64")
        per_scale[f"x{scale}"] = {
            "passed": pair.status == "passed",
            "reasons": list(pair.reasons),
            "max_abs": round(figures.max_abs, 4),
            "edges64_max_abs": round(pattern.max_abs, 4),
            "max_lsb": q8.max_lsb if q8 else None,
            "p99_abs": round(figures.p99_abs, 5),
            "identical_8bit": round(q8.identical_fraction, 4) if q8 else None,
            "psnr_db": round(figures.psnr_db, 2),
            "worst_image": figures.worst_image,
        }
    t = TOLERANCE_INT8
    worst_abs = max(v["max_abs"] for v in per_scale.values())
    worst_lsb = max(v["max_lsb"] for v in per_scale.values())
    worst_psnr = min(v["psnr_db"] for v in per_scale.values())
    return {
        "passed": all(v["passed"] for v in per_scale.values()),
        "max_abs": worst_abs,
        "margin_max_abs": round(t.max_abs - worst_abs, 4),
        "max_lsb": worst_lsb,
        "margin_lsb": t.max_lsb_8bit - worst_lsb,
        "margin_psnr_db": round(worst_psnr - t.min_psnr_db, 2),
        "per_scale": per_scale,
    }


def timing(int8: Path, fp32: Path, repeats: int) -> dict[str, Any]:
    x = np.random.default_rng(0).random((1, 1, 768, 1024), dtype=np.float32)
    times: dict[str, float] = {}
    for name, path in (("ort_fp32", fp32), ("ort_int8", int8), ("ort_fp32_again", fp32)):
        with OnnxRuntimeRunner(path) as runner:
            runner.infer(x[:, :, :128, :128])
            samples = []
            for _ in range(repeats):
                started = time.perf_counter()
                runner.infer(x)
                samples.append(time.perf_counter() - started)
        times[name] = statistics.median(samples)
    fp32_s = min(times["ort_fp32"], times["ort_fp32_again"])
    return {
        "input": "768x1024 whole image",
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "int8_vs_fp32": round(fp32_s / times["ort_int8"], 2),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


class OpenVinoRunner:
    """The QDQ model in OpenVINO (f32 inference precision), enough for upscale_plane/run_images."""

    def __init__(self, path: Path) -> None:
        import openvino

        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.info = OnnxRuntimeRunner(path).info

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        result = self.compiled(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--sets", default="set5,set14")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--no-edges", action="store_true")
    parser.add_argument("--speed", action="store_true", help="time ORT INT8 vs FP32 on a 768x1024 input")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vdsr-int8-recipe")
    parser.add_argument("--keep", type=Path, default=None, help="copy each INT8 model into this folder")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    scales = [int(s) for s in args.scales.split(",") if s]
    model, info = load_weights(args.weights)
    args.cache.mkdir(parents=True, exist_ok=True)
    fp32 = ensure_onnx(model, info, "fp32", args.cache)
    tag = hashlib.sha256(fp32.read_bytes()).hexdigest()[:12]
    reference = Reference(fp32, args.cache, tag)
    calibration = load_calibration_set()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / f"int8-recipe-{datetime.now(timezone.utc):%Y%m%d}.jsonl"
    try:
        for spec in args.variant or ["default"]:
            recipe, options = parse_variant(spec)
            planes, guard_planes = planes_for(options)
            with tempfile.TemporaryDirectory() as work:
                target = Path(work) / "vdsr-int8.onnx"
                started = time.perf_counter()
                result = quantize_int8(
                    fp32, target, planes, replace(recipe, tiles=len(planes)), guard_planes=guard_planes, overwrite=True
                )
                seconds = time.perf_counter() - started
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"{hashlib.sha256(spec.encode()).hexdigest()[:8]}-int8.onnx").write_bytes(
                        target.read_bytes()
                    )
                candidate: Any
                if options["backend"] == "openvino":
                    candidate = OpenVinoRunner(target)
                else:
                    candidate = OnnxRuntimeRunner(target).__enter__()
                record: dict[str, Any] = {
                    "variant": spec,
                    "backend": options["backend"],
                    "recipe": {**asdict(recipe), "tiles": len(planes)},
                    "data": options["data"],
                    "float_nodes": list(result.float_nodes),
                    "quantize_s": round(seconds, 1),
                }
                record["held_out_cost_db"] = quality_cost(
                    reference.runner().infer, candidate.infer, calibration, SCALES
                )
                if sets:
                    record["sets"] = set_costs(candidate, reference, sets, scales)
                    record["worst_set_cost_db"] = min(v["cost_db"] for v in record["sets"].values())
                if not args.no_edges:
                    record["edges"] = edge_check(candidate, reference, scales)
                if args.speed:
                    record["speed"] = timing(target, fp32, args.repeats)
                if isinstance(candidate, OnnxRuntimeRunner):
                    candidate.__exit__(None, None, None)
            record["loadavg"] = [round(v, 2) for v in os.getloadavg()]
            record["cpu"] = _cpu()
            record["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if args.note:
                record["note"] = args.note
            line = json.dumps(record)
            print(line, flush=True)
            with log.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
    finally:
        reference.close()


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()

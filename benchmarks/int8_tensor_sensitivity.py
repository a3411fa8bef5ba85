"""Which ReLU outputs need the contrast guard's wider INT8 range (per-tensor sensitivity).

Starting from every ReLU range at the guard's (recipe 2: MinMax over the shipped tiles and
the full-contrast guard tiles), one tensor at a time gets the shipped tiles' range only;
reported per tensor: the worst difference to ONNX Runtime FP32 on `vdsr validate`'s 64x64
1-px edge pattern (x2/x3/x4) and the task-PSNR cost on Set5 x2 (the proxy for photos).
The ranges are set through onnxruntime's TensorQuantOverrides (every quantized activation
is a ReLU output, so the calibration run itself does not matter and uses one plane).

    nice -n 10 python benchmarks/int8_tensor_sensitivity.py [--start shipped] [--sets set5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import int8_recipe as recipe_bench
import numpy as np

from vdsr_deploy import protocol
from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
from vdsr_deploy.export import quantize
from vdsr_deploy.export.calibration import SCALES, calibration_inputs, guard_inputs
from vdsr_deploy.export.int8 import DEFAULT_RECIPE
from vdsr_deploy.export.onnx import ensure_onnx
from vdsr_deploy.model.weights import load_weights
from vdsr_deploy.parity import edge_case_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", choices=("guard", "shipped"), default="guard")
    parser.add_argument("--sets", default="set5")
    parser.add_argument(
        "--combo",
        action="append",
        default=None,
        help="instead of one tensor at a time: these tensors (relu7+relu4) at the guard's range, "
        "the others at a share of it, e.g. relu7+relu4@0.3 (default share 0: the shipped tiles' range)",
    )
    parser.add_argument(
        "--float-sweep",
        type=float,
        default=None,
        metavar="SHARE",
        help="instead: every ReLU range at this guard share, and one inner conv at a time kept FP32",
    )
    parser.add_argument("--only", default="", help="with --float-sweep: only these conv indices (1+6+9)")
    parser.add_argument("--float", default="", help="with --float-sweep: these conv indices FP32 in every variant")
    parser.add_argument("--validate-edges", action="store_true", help="also vdsr validate's edge check")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vdsr-int8-recipe")
    args = parser.parse_args()
    model, info = load_weights(None)
    fp32 = ensure_onnx(model, info, "fp32", args.cache)
    import hashlib

    reference = recipe_bench.Reference(fp32, args.cache, hashlib.sha256(fp32.read_bytes()).hexdigest()[:12])
    from vdsr_deploy.export.calibration import load_calibration_set

    photo_planes = calibration_inputs(load_calibration_set(), SCALES, guard=False)
    photo = quantize.activation_maxima(fp32, photo_planes)
    guard = quantize.activation_maxima(fp32, [*photo_planes, *guard_inputs(SCALES)])
    pattern = next(image for image in edge_case_images() if image.name == "edges-64x64")
    luma = (16.0 + 219.0 * pattern.pixels[..., 0].astype(np.float64)) / 255.0
    edge_inputs = {s: protocol.imresize(luma, s).astype(np.float32)[None, None] for s in SCALES}
    names = list(photo)
    base = guard if args.start == "guard" else photo
    other = photo if args.start == "guard" else guard
    variants: list[tuple[str, dict[str, float]]] = [("none", dict(base))]
    variants += [(name, {**base, name: other[name]}) for name in names]
    floats: dict[str, tuple[int, ...]] = {}
    if args.float_sweep is not None:
        share = args.float_sweep
        fixed = tuple(int(v) for v in args.float.split("+") if v)
        shared = {n: photo[n] * (guard[n] / photo[n]) ** share for n in names}
        variants = [(f"float {'+'.join(map(str, fixed)) or 'none'} @{share}", shared)]
        floats[variants[0][0]] = fixed
        only = {int(v) for v in args.only.split("+") if v}
        for index in range(1, len(names)):
            if index not in fixed and (not only or index in only):
                label = f"float {'+'.join(map(str, (*fixed, index)))} @{share}"
                variants.append((label, shared))
                floats[label] = (*fixed, index)
    if args.combo:
        variants = []
        for combo in args.combo:
            chosen, _, share_text = combo.partition("@")
            share = float(share_text or 0)
            keep = set(chosen.split("+"))
            ranges = {n: guard[n] if n in keep else photo[n] * (guard[n] / photo[n]) ** share for n in names}
            variants.append((combo, ranges))
    with tempfile.TemporaryDirectory() as work, OnnxRuntimeRunner(fp32) as ref_runner:
        for label, ranges in variants:
            target = Path(work) / "m.onnx"
            with mock.patch.object(quantize, "guarded_ranges", lambda *a, ranges=ranges: ranges):
                quantize.quantize_int8(
                    fp32, target, photo_planes[:1], replace(DEFAULT_RECIPE, tiles=1, float_convs=floats.get(label, ())),
                    guard_planes=photo_planes[:1], overwrite=True,
                )  # fmt: skip
            with OnnxRuntimeRunner(target) as int8:
                edge = {
                    f"x{s}": round(float(np.abs(np.clip(int8.infer(x), 0, 1) - np.clip(ref_runner.infer(x), 0, 1)).max()), 4)  # noqa: E501
                    for s, x in edge_inputs.items()
                }  # fmt: skip
                record: dict[str, Any] = {"start": args.start, "changed": label, "edges64_clipped_max_abs": edge}
                if args.validate_edges:
                    check = recipe_bench.edge_check(int8, reference, list(SCALES))
                    record["validate_edges"] = {
                        k: check[k] for k in ("passed", "max_abs", "margin_max_abs", "max_lsb", "margin_lsb")
                    }
                sets = [s for s in args.sets.split(",") if s]
                if sets:
                    costs = recipe_bench.set_costs(int8, reference, sets, [2])
                    record["set_cost_db"] = {k: v["cost_db"] for k, v in costs.items()}
            print(json.dumps(record), flush=True)
            with (recipe_bench.RESULTS / "int8-tensor-sensitivity.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    reference.close()


if __name__ == "__main__":
    main()

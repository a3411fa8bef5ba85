"""Merge the JSON reports of a `vdsr eval` split into parts (by scale, by image folder) into
one report per dataset, the per-scale means recomputed over all images as
:func:`vdsr_deploy.evaluation.run.score` computes them (so a long evaluation, e.g. with
``--ensemble`` on a busy CPU, can run as parallel processes).

    python benchmarks/merge_eval_reports.py PARTS_DIR OUT_DIR

PARTS_DIR holds one folder per part, each with the ``<dataset>.json`` that ``vdsr eval
--out`` wrote; OUT_DIR receives ``<dataset>.json`` and ``<dataset>.md``. Parts must come
from the same runtime and ensemble setting, and no image may be scored twice at one scale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vdsr_deploy.evaluation.report import write_reports
from vdsr_deploy.evaluation.run import EvalReport, ImageScore, summarize


def merge(parts: list[dict[str, Any]]) -> EvalReport:
    images = sorted(
        (ImageScore(**item) for part in parts for item in part["images"]),
        key=lambda i: (i.scale, i.name),
    )
    keys = [(i.name, i.scale) for i in images]
    if len(set(keys)) != len(keys):
        raise SystemExit("error: an image is scored twice at one scale")
    backends = {part["backend"] for part in parts}
    ensembles = {bool(part.get("ensemble", False)) for part in parts}
    if len(backends) != 1 or len(ensembles) != 1:
        raise SystemExit(f"error: parts from different runs: {backends}, ensemble {ensembles}")
    return EvalReport(
        parts[0]["dataset"], backends.pop(), tuple(images), summarize(images), ensemble=ensembles.pop()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(args.parts.glob("*/*.json")):
        data = json.loads(path.read_text())
        by_dataset.setdefault(data["dataset"], []).append(data)
    for dataset, parts in by_dataset.items():
        report = merge(parts)
        write_reports([report], args.out)
        means = ", ".join(f"x{s.scale} {s.psnr:.2f} ({s.images} images)" for s in report.summaries)
        print(f"{dataset} ({len(parts)} parts): {means}")


if __name__ == "__main__":
    main()

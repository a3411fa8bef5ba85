"""After training: plot validation PSNR against training patches seen, evaluate, and ship the weights.

    python -m train.report runs/fast --val ../shared/data/val/set5 ../shared/data/val/set14 \
        --ship vdsr_deploy/assets/vdsr_default.safetensors --reports docs/quality

Evaluation uses :mod:`vdsr_deploy.evaluation.run` (the paper's protocol) on the PyTorch fp32
runner; the figures are stored in the shipped weights' metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.evaluation.report import write_reports
from vdsr_deploy.evaluation.run import PAPER_PSNR, EvalReport, evaluate_folders
from vdsr_deploy.model.weights import load_weights, save_weights


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def chain_logs(runs: list[tuple[list[dict[str, Any]], int]]) -> list[dict[str, Any]]:
    """Validation entries of runs that continue one another (``init_weights``), in order.

    ``runs`` holds each run's log and batch size. Each entry's ``step`` is offset by the
    iterations of the runs before it, and ``patches`` counts the training patches seen so far
    over the whole chain (iterations x batch size per run), the fair axis when batch sizes
    differ between runs.
    """
    chained: list[dict[str, Any]] = []
    step_offset = patch_offset = 0
    for log, batch_size in runs:
        for entry in (e for e in log if e["event"] == "validate"):
            chained.append(
                {
                    **entry,
                    "step": entry["step"] + step_offset,
                    "patches": patch_offset + entry["step"] * batch_size,
                }
            )
        iterations = max((e["step"] for e in log if "step" in e), default=0)
        step_offset += iterations
        patch_offset += iterations * batch_size
    return chained


def run_batch_size(run: Path) -> int:
    """The batch size of a finished run, from the recipe in its final weights."""
    _, info = load_weights(run / "final.safetensors")
    return int(info.training["recipe"]["batch_size"])


def plot_validation(entries: list[dict[str, Any]], png: Path, title: str) -> None:
    """Validation PSNR per scale (and the bicubic baseline) against training patches seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not entries:
        raise SystemExit("no validation entries in the log: train with --val to get a curve")
    scales = sorted(int(k[1:]) for k in entries[0] if k.startswith("x") and k[1:].isdigit())
    figure, grid = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 3.6), squeeze=False)
    axes = list(grid[0])
    for axis, scale in zip(axes, scales, strict=True):
        patches = [e["patches"] / 1e6 for e in entries]
        axis.plot(patches, [e[f"x{scale}"] for e in entries], marker="o", label="VDSR (this run)")
        axis.axhline(entries[0][f"bicubic_x{scale}"], color="grey", linestyle="--", label="bicubic")
        paper = PAPER_PSNR["set5"].get(scale)
        if paper:
            axis.axhline(paper[1], color="red", linestyle=":", label="paper VDSR")
        axis.set_title(f"Set5 x{scale}")
        axis.set_xlabel("training patches seen (millions)")
        axis.set_ylabel("PSNR (dB, Y)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training run folder (log.jsonl, final.safetensors)")
    parser.add_argument("--weights", type=Path, help="weights to evaluate (default RUN/final.safetensors)")
    parser.add_argument("--val", type=Path, nargs="+", required=True, help="HR folders to evaluate on")
    parser.add_argument("--reports", type=Path, required=True, help="folder for Markdown/JSON reports and the plot")
    parser.add_argument(
        "--before",
        type=Path,
        nargs="*",
        default=[],
        help="earlier runs this one was initialised from (oldest first), to plot the whole curve",
    )
    parser.add_argument("--ship", type=Path, help="write the evaluated weights here (with the results)")
    args = parser.parse_args()

    runs = [*args.before, args.run]
    entries = chain_logs([(read_log(run / "log.jsonl"), run_batch_size(run)) for run in runs])
    title = "training run " + " -> ".join(run.name for run in runs)
    plot_validation(entries, args.reports / "validation_psnr.png", title)
    weights = args.weights or args.run / "final.safetensors"
    reports: list[EvalReport] = evaluate_folders(args.val, [2, 3, 4], RunnerSpec(backend="torch", weights=weights))
    write_reports(reports, args.reports)
    if args.ship:
        model, info = load_weights(weights)
        evaluation = {
            r.dataset: {
                f"x{s.scale}": {
                    "psnr": round(s.psnr, 3),
                    "ssim": round(s.ssim, 4),
                    "bicubic_psnr": round(s.bicubic_psnr, 3),
                }
                for s in r.summaries
            }
            for r in reports
        }
        save_weights(model, args.ship, scales=info.scales, training=info.training, evaluation=evaluation)


if __name__ == "__main__":
    main()

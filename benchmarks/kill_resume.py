"""Crash test: SIGKILL a batch job at every fault point, resume, compare with a clean run.

A job (``tests/job_child.py``: the real :func:`vdsr_deploy.job.run_job` with a numpy
stand-in for the network, so each process starts in a fraction of a second) upscales a
mixed folder (multi-band PNG, RGBA, 16-bit PNG, 8-bit TIFF, JPEG). First an uninterrupted
run gives the reference bytes. Then, for every step of :mod:`vdsr_deploy.faults` (``write``,
``finish``, ``manifest`` = half a manifest line written, ``rename``, ``renamed``) and every
occurrence ``n`` of it until a run is no longer killed (the sweep), and for ``--chains``
random sequences of 2-3 kills in a row (each resume killed again at another point):

1. a fresh output folder, the job run with ``VDSR_FAULT=<step>:<n>:kill``: it must die by
   SIGKILL;
2. the same command without the fault: exit 0, every output byte-identical to the
   reference, no temporary file left;
3. once more: nothing redone, every output "complete (matches the manifest)".

    python benchmarks/kill_resume.py --chains 20

Writes benchmarks/results/kill_resume.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "job_child.py"
RESULTS = ROOT / "benchmarks" / "results"
STEPS = ("write", "finish", "manifest", "rename", "renamed")


def make_inputs(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    y, x = np.mgrid[0:90, 0:110]
    rgb = np.stack([(x * 3 + y) % 256, (x + y * 5) % 256, (x * y) % 256], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "big.png")
    Image.fromarray(rgb[:37, :19]).convert("RGBA").save(folder / "alpha.png")
    Image.fromarray(rgb[:30, :41]).save(folder / "page.tif")
    Image.fromarray(rgb[:45, :45]).save(folder / "photo.jpg", quality=90)
    (folder / "sub").mkdir()
    Image.fromarray(rgb[:25, :33, 0].astype(np.uint16) * 257).save(folder / "sub" / "g16.png")


def run(out: Path, inputs: Path, fault: str | None = None) -> tuple[int, dict[str, Any] | None]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("VDSR_FAULT", None)
    if fault:
        env["VDSR_FAULT"] = fault
    done = subprocess.run(
        [sys.executable, str(CHILD), str(out), str(inputs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout) if done.returncode in (0, 1) and done.stdout else None
    return done.returncode, report


def outputs(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.part")]


def trial(work: Path, inputs: Path, reference: dict[str, bytes], faults: list[str]) -> dict[str, Any]:
    """Kill at each fault in turn (each on a resume of the previous), then resume and check."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    killed = []
    for fault in faults:
        code, _ = run(out, inputs, fault)
        killed.append(code == -signal.SIGKILL)
    code, _ = run(out, inputs)
    identical = code == 0 and outputs(out) == reference
    left = temporaries(out)
    again_code, again = run(out, inputs)
    complete = (
        again_code == 0
        and again is not None
        and not again["done"]
        and all(s["reason"] == "complete (matches the manifest)" for s in again["skipped"])
        and len(again["skipped"]) == len(reference)
    )
    return {
        "faults": faults,
        "killed": killed,
        "resume_exit": code,
        "identical": identical,
        "temporaries_left": left,
        "complete_on_rerun": complete,
        "ok": all(killed) and identical and not left and complete,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=20, help="random multi-kill sequences")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vdsr-kill-") as temp:
        work = Path(temp)
        inputs = work / "in"
        make_inputs(inputs)
        code, report = run(work / "reference", inputs)
        assert code == 0 and report is not None and not report["failed"], report
        reference = outputs(work / "reference")
        trials: list[dict[str, Any]] = []
        occurrences: dict[str, int] = {}
        for step in STEPS:
            n = 1
            while True:
                code, _ = run(work / "probe", inputs, f"{step}:{n}:kill")
                shutil.rmtree(work / "probe", ignore_errors=True)
                if code != -signal.SIGKILL:
                    break
                trials.append(trial(work, inputs, reference, [f"{step}:{n}:kill"]))
                n += 1
            occurrences[step] = n - 1
        rng = random.Random(args.seed)
        for _ in range(args.chains):
            # later kills need earlier occurrences: a resume redoes only what is left
            faults = [
                f"{step}:{rng.randint(1, max(1, occurrences[step] // (k + 1)))}:kill"
                for k, step in enumerate(rng.choices(STEPS, k=rng.randint(2, 3)))
            ]
            result = trial(work, inputs, reference, faults)
            result["chain"] = True
            trials.append(result)
    import PIL

    sys.path.insert(0, str(ROOT))
    from vdsr_deploy.environment import cpu_model

    # a chained fault whose step no longer occurs on the resume is not killed: not a failure
    failures = [
        t
        for t in trials
        if not (t["identical"] and not t["temporaries_left"] and t["complete_on_rerun"])
    ]
    kills = sum(sum(t["killed"]) for t in trials)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "versions": {"python": platform.python_version(), "pillow": PIL.__version__},
        "note": args.note,
        "inputs": sorted(reference),
        "occurrences_per_step": occurrences,
        "trials": len(trials),
        "sigkills_delivered": kills,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
        "details": trials,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kill_resume.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# SIGKILL at every fault point, then resume",
        "",
        f"{result['date']}, {result['machine']['cores']} cores, Python "
        f"{result['versions']['python']}, Pillow {result['versions']['pillow']}. {args.note}",
        "",
        "| step | occurrences in one run (= single-kill trials) |",
        "|---|---|",
        *(f"| {step} | {count} |" for step, count in occurrences.items()),
        "",
        f"{len(trials)} trials ({len(trials) - args.chains} single kills, {args.chains} chains of "
        f"2-3 kills), {kills} SIGKILLs delivered, {len(failures)} trials not byte-identical / "
        f"not clean / not complete on the re-run; {result['seconds']} s.",
        "",
    ]
    (RESULTS / "kill_resume.md").write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

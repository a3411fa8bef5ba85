"""The hostile user's run: `vdsr upscale` on inputs, outputs and models meant to break it.

Each case sets up a scratch folder, runs the real CLI (``python -m vdsr_deploy.cli``, the
shipped weights, small images) once or more, and checks three things:

- **data**: every file of the user's that the case protects (inputs, files already at an
  output's name, a report path that is an image...) has the same bytes afterwards;
- **no traceback**: neither stream contains ``Traceback``;
- **the answer**: the exit code is one the case allows and, where given, the output says
  what the case expects.

    python benchmarks/hostile.py [--only NAME]

Writes benchmarks/results/hostile.{json,md}; exits 1 if any case fails. Takes a few
minutes on 2 cores (each run starts Python and torch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FAST = ["-b", "torch", "-p", "fp32", "--device", "cpu", "--tile", "0", "-s", "2"]


@dataclass
class Run:
    code: int
    output: str


@dataclass
class Outcome:
    name: str
    what: str
    ok: bool = True
    data_lost: list[str] = field(default_factory=list)
    traceback: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Case:
    """A scratch folder, the CLI runs of one case, and what they must keep and say."""

    def __init__(self, folder: Path, engines: Path) -> None:
        self.folder = folder
        self.engines = engines
        self.protected: dict[Path, str] = {}
        self.outcome = Outcome("", "")

    def image(self, relative: str, size: tuple[int, int] = (23, 17)) -> Path:
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0 : size[1], 0 : size[0]]
        pixels = np.stack([(x * 9 + y * 5 + c * 60) % 256 for c in range(3)], axis=2)
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        return path

    def protect(self, *paths: Path) -> None:
        for path in paths:
            self.protected[path] = _digest(path)

    def run(self, *args: object, env: dict[str, str] | None = None, wait: bool = True) -> Run:
        command = [sys.executable, "-m", "vdsr_deploy.cli", "upscale", *map(str, args)]
        command += ["--engines-dir", str(self.engines)]
        environment = {**os.environ, "COLUMNS": "1000", **(env or {})}
        result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
        return self._seen(Run(result.returncode, result.stdout + result.stderr))

    def start(self, *args: object, env: dict[str, str]) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "vdsr_deploy.cli", "upscale", *map(str, args)]
        command += ["--engines-dir", str(self.engines)]
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "1000", **env},
        )

    def finish(self, process: subprocess.Popen[str]) -> Run:
        output, _ = process.communicate(timeout=600)
        return self._seen(Run(process.returncode, output))

    def _seen(self, run: Run) -> Run:
        if "Traceback" in run.output:
            self.outcome.traceback = True
            self.problem(f"traceback: {run.output[-400:]}")
        return run

    def expect(self, run: Run, codes: set[int], *texts: str) -> None:
        if run.code not in codes:
            self.problem(f"exit {run.code}, expected {sorted(codes)}: {run.output[-300:]}")
        for text in texts:
            if text not in run.output:
                self.problem(f"output lacks {text!r}: {run.output[-300:]}")

    def problem(self, text: str) -> None:
        self.outcome.problems.append(text)

    def check_data(self) -> None:
        for path, digest in self.protected.items():
            if _digest(path) != digest:
                self.outcome.data_lost.append(str(path.relative_to(self.folder)))


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        return f"unreadable: {error.strerror}"


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared: {process.communicate()[0][-500:]}")
        time.sleep(0.02)


# --- the cases --------------------------------------------------------------------------------


def publish_race(c: Case) -> None:
    """A file is saved at the output's name while the job runs (held before its rename)."""
    c.image("in/a.png")
    release = c.folder / "release"
    process = c.start(c.folder / "in", "-o", c.folder / "out", *FAST, env={"VDSR_FAULT": f"rename:1:pause:{release}"})
    wait_for(Path(f"{release}.reached"), process)
    (c.folder / "out" / "a.png").write_bytes(b"the user's file")
    c.protect(c.folder / "out" / "a.png")
    release.touch()
    c.expect(c.finish(process), {1}, "a file appeared there while this job ran")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0}, "1 skipped")


def nested_outputs(c: Case) -> None:
    """Two jobs, one writing inside the other's output folder, both ways round."""
    c.image("in/a.png")
    for outer, inner in (("nest", "nest/sub"), ("nest2/sub", "nest2")):
        release = c.folder / f"release-{outer.replace('/', '-')}"
        first = c.start(c.folder / "in", "-o", c.folder / outer, *FAST, env={"VDSR_FAULT": f"write:1:pause:{release}"})
        wait_for(Path(f"{release}.reached"), first)
        c.expect(
            c.run(c.folder / "in", "-o", c.folder / inner, *FAST, "-s", "3"), {1}, "another vdsr job is writing to"
        )
        release.touch()
        c.expect(c.finish(first), {0})
        c.protect(c.folder / outer / "a.png")


def garbled_manifest(c: Case) -> None:
    """Records replaced by garbage, one output damaged: reported, never skipped silently."""
    for name in "abc":
        c.image(f"in/{name}.png")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0})
    manifest = c.folder / "out" / ".vdsr-manifest.jsonl"
    records = {json.loads(line)["output"]: line for line in manifest.read_text().splitlines()}
    manifest.write_text("garbage\n{torn\n" + records["c.png"] + "\n")
    damaged = c.folder / "out" / "b.png"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    c.protect(damaged)
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {1}, "lost records")


def torn_manifest_line(c: Case) -> None:
    """A record torn mid-line names its output: the damaged output is redone."""
    for name in "ab":
        c.image(f"in/{name}.png")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0})
    reference = (c.folder / "out" / "a.png").read_bytes()
    manifest = c.folder / "out" / ".vdsr-manifest.jsonl"
    records = {json.loads(line)["output"]: line for line in manifest.read_text().splitlines()}
    manifest.write_text(records["a.png"][:60] + "\n" + records["b.png"] + "\n")
    (c.folder / "out" / "a.png").write_bytes(reference[:-7] + b"garbage")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0}, "replaced")
    if (c.folder / "out" / "a.png").read_bytes() != reference:
        c.problem("the damaged output was not redone")


def foreign_file_at_target(c: Case) -> None:
    c.image("in/a.png")
    (c.folder / "out").mkdir()
    (c.folder / "out" / "a.png").write_bytes(b"mine")
    c.protect(c.folder / "out" / "a.png", c.folder / "in" / "a.png")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0}, "not made by this job")


def output_is_the_input_folder(c: Case) -> None:
    source = c.image("in/a.png")
    c.protect(source)
    c.expect(c.run(source, "-o", c.folder / "in", *FAST), {1}, "would overwrite an input")


def output_file_is_the_input(c: Case) -> None:
    source = c.image("in/a.png")
    c.protect(source)
    c.expect(c.run(source, "-o", source, *FAST), {1}, "would overwrite an input")


def other_settings_kept(c: Case) -> None:
    c.image("in/a.png")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0})
    c.protect(c.folder / "out" / "a.png")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST, "-s", "3"), {0}, "other settings")


def report_onto_an_input(c: Case) -> None:
    """--report naming one of the user's images."""
    source = c.image("in/a.png")
    other = c.image("in/keep.png")
    c.protect(other)
    run = c.run(source, "-o", c.folder / "out", *FAST, "--report", other)
    c.expect(run, {0, 1, 2})


def report_is_a_folder(c: Case) -> None:
    source = c.image("in/a.png")
    (c.folder / "rep").mkdir()
    c.expect(c.run(source, "-o", c.folder / "out", *FAST, "--report", c.folder / "rep"), {1, 2}, "error:")


def symlink_loop(c: Case) -> None:
    c.image("in/a.png")
    loop = c.folder / "in" / "loop.png"
    loop.symlink_to(loop)
    c.expect(c.run(loop, c.folder / "in" / "a.png", "-o", c.folder / "out", *FAST), {1}, "link that cannot be followed")


def not_utf8_name(c: Case) -> None:
    c.image(os.fsdecode(b"in/caf\xe9.png"))
    report = c.folder / "r.json"
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST, "--report", report), {0})
    if "\\udce9" not in report.read_text():
        c.problem("the report does not keep the name")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0}, "1 skipped")


def odd_names(c: Case) -> None:
    for name in ("with space.png", "ünïcødé.png", "emoji-🙂.png", "-dash.png", "[brackets].png"):
        c.image(f"in/{name}")
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {0}, "5 done")


def special_weights(c: Case) -> None:
    source = c.image("in/a.png")
    (c.folder / "w-folder.safetensors").mkdir()
    os.mkfifo(c.folder / "w-fifo.safetensors")
    (c.folder / "w-empty.safetensors").write_bytes(b"")
    (c.folder / "w-garbage.safetensors").write_bytes(os.urandom(300))
    expected = {
        "w-folder.safetensors": "is a folder",
        "w-fifo.safetensors": "is a FIFO",
        "/dev/zero": "is a character device",
        "w-empty.safetensors": "error:",
        "w-garbage.safetensors": "error:",
        "w-missing.safetensors": "weights file not found",
    }
    for name, text in expected.items():
        weights = name if name.startswith("/") else c.folder / name
        c.expect(c.run(source, "-o", c.folder / "out", *FAST, "-w", weights), {1}, text)
    if (c.folder / "out").exists():
        c.problem("an output folder was created for a job that failed up front")


def _onnx_graph(path: Path, name: str, channels: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    shape = ["N", channels, "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Mul", [name, "k"], ["output"])],
        "foreign",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [0.5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def foreign_onnx(c: Case) -> None:
    source = c.image("in/a.png")
    ort = ["-b", "onnxruntime", "-p", "fp32", "--device", "cpu", "--tile", "0"]
    half = _onnx_graph(c.folder / "half.onnx", "input", 1)
    c.expect(c.run(source, "-o", c.folder / "out", *ort, "--onnx", half), {1}, "not a vdsr-deploy export")
    c.expect(
        c.run(source, "-o", c.folder / "out", *ort, "--onnx", _onnx_graph(c.folder / "x.onnx", "x", 1)),
        {1},
        "expected one input 'input'",
    )
    c.expect(
        c.run(source, "-o", c.folder / "out", *ort, "--onnx", _onnx_graph(c.folder / "rgb.onnx", "input", 3)),
        {1},
        "(N, 3, H, W)",
    )
    (c.folder / "garbage.onnx").write_bytes(os.urandom(500))
    c.expect(
        c.run(source, "-o", c.folder / "out", *ort, "--onnx", c.folder / "garbage.onnx"),
        {1},
        "not a readable ONNX file",
    )
    (c.folder / "empty.onnx").write_bytes(b"")
    c.expect(c.run(source, "-o", c.folder / "out", *ort, "--onnx", c.folder / "empty.onnx"), {1}, "error:")
    c.expect(c.run(source, "-o", c.folder / "out", *ort, "--onnx", half, "--foreign-model"), {0})


def damaged_caches(c: Case) -> None:
    source = c.image("in/a.png")
    ort = ["-b", "onnxruntime", "-p", "fp32", "--device", "cpu", "--tile", "0", "--overwrite"]
    engines = c.folder / "engines"
    c.engines = engines
    c.expect(c.run(source, "-o", c.folder / "out", *ort), {0})
    for graph in (engines / "ort-optimized").iterdir():
        graph.write_bytes(b"garbage")
    c.expect(c.run(source, "-o", c.folder / "out", *ort), {0}, "cached optimised graph is unreadable")
    for export in engines.glob("*.onnx"):
        export.write_bytes(export.read_bytes()[:4000])
    c.expect(c.run(source, "-o", c.folder / "out", *ort), {0}, "cached export is unreadable")


def nothing_to_do(c: Case) -> None:
    (c.folder / "docs").mkdir()
    (c.folder / "docs" / "notes.txt").write_text("hello")
    c.expect(c.run(c.folder / "docs", "-o", c.folder / "out", *FAST), {1}, "no image found")
    c.expect(
        c.run(c.folder / "docs" / "../../../../../../../etc", "-o", c.folder / "out2", *FAST), {1}, "no image found"
    )
    c.expect(c.run(c.folder / "missing", "-o", c.folder / "out3", *FAST), {1}, "no such file")


def bad_images(c: Case) -> None:
    c.image("in/good.png")
    (c.folder / "in" / "empty.png").write_bytes(b"")
    (c.folder / "in" / "text.png").write_text("not an image")
    good = (c.folder / "in" / "good.png").read_bytes()
    (c.folder / "in" / "truncated.png").write_bytes(good[: len(good) // 2])
    c.protect(*(c.folder / "in").iterdir())
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {1}, "1 done", "3 failed")


def bad_options(c: Case) -> None:
    source = c.image("in/a.png")
    options = (
        ["-s", "0"], ["-s", "abc"], ["--tile", "-5"], ["--batch", "0"], ["--jobs", "a:b"], ["--jobs", "4"],
        ["--memory-mb", "0"], ["--format", "xyz"], ["--frobnicate"], ["-b", "pytorch"], ["-p", "fp8"],
    )  # fmt: skip
    for option in options:
        c.expect(c.run(source, "-o", c.folder / "out", *option), {1, 2}, "error")
    if (c.folder / "out").exists():
        c.problem("an output folder was created for a refused command")


def output_through_a_file(c: Case) -> None:
    source = c.image("in/a.png")
    (c.folder / "afile").write_text("keep me")
    c.protect(c.folder / "afile")
    c.expect(c.run(source, "-o", c.folder / "afile" / "out", *FAST), {1, 2}, "is a file, expected a folder")


def decompression_bomb(c: Case) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )
    (c.folder / "in").mkdir()
    (c.folder / "in" / "bomb.png").write_bytes(bomb)
    c.expect(c.run(c.folder / "in", "-o", c.folder / "out", *FAST), {1}, "exceeds the limit")


CASES: dict[str, Callable[[Case], None]] = {
    function.__name__: function
    for function in (
        publish_race,
        nested_outputs,
        garbled_manifest,
        torn_manifest_line,
        foreign_file_at_target,
        output_is_the_input_folder,
        output_file_is_the_input,
        other_settings_kept,
        report_onto_an_input,
        report_is_a_folder,
        symlink_loop,
        not_utf8_name,
        odd_names,
        special_weights,
        foreign_onnx,
        damaged_caches,
        nothing_to_do,
        bad_images,
        bad_options,
        output_through_a_file,
        decompression_bomb,
    )
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(CASES), help="run only this case")
    args = parser.parse_args()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="vdsr-hostile-") as scratch:
        engines = Path(scratch) / "engines"
        for name in args.only or CASES:
            folder = Path(scratch) / name
            folder.mkdir()
            case = Case(folder, engines)
            case.outcome = Outcome(name, (CASES[name].__doc__ or name).strip().splitlines()[0])
            started = time.perf_counter()
            try:
                CASES[name](case)
            except Exception as error:  # the harness's own failure is a failed case, not a crash
                case.problem(f"harness: {error!r}")
            case.check_data()
            case.outcome.seconds = round(time.perf_counter() - started, 1)
            case.outcome.ok = not (case.outcome.problems or case.outcome.data_lost)
            outcomes.append(case.outcome)
            print(f"{'ok  ' if case.outcome.ok else 'FAIL'} {name} ({case.outcome.seconds} s)", flush=True)
            for problem in case.outcome.problems:
                print(f"     {problem[:300]}")
            shutil.rmtree(folder, ignore_errors=True)
    _write(outcomes)
    return 0 if all(o.ok for o in outcomes) else 1


def _write(outcomes: list[Outcome]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg()[0],
    }
    data = {"meta": meta, "cases": [o.__dict__ for o in outcomes]}
    (RESULTS / "hostile.json").write_text(json.dumps(data, indent=2) + "\n")
    lost = sum(1 for o in outcomes if o.data_lost)
    tracebacks = sum(1 for o in outcomes if o.traceback)
    lines = [
        "# Hostile run (`benchmarks/hostile.py`)",
        "",
        f"{meta['date']}, commit {commit}, Python {meta['python']}, load average {meta['load_average']:.1f}.",
        f"**{sum(o.ok for o in outcomes)}/{len(outcomes)} cases pass; "
        f"data lost in {lost}, tracebacks in {tracebacks}.**",
        "",
        "| case | what | result | seconds |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        result = "ok" if o.ok else "; ".join([*(f"lost {p}" for p in o.data_lost), *o.problems])[:200]
        lines.append(f"| {o.name} | {o.what} | {result.replace('|', '/')} | {o.seconds} |")
    (RESULTS / "hostile.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())

"""Video in, video out on this machine: how frames reach the network, and throughput.

Two measurements, both with the shipped weights on ONNX Runtime (CPU, fp32, tile 256,
batch 4 unless told otherwise):

``paths``: quality of the two frame paths against the image path and the ground truth.
HR frames are a 192 x 192 window panning over Set5 butterfly (from the MATLAB oracle in
../shared/data/oracles, never copied), downscaled x2 with MATLAB bicubic and stored as an
FFV1 yuv420p clip (BT.601, limited range): what a decoder hands the job. Each frame goes
(1) through the image path (the decoded frame's RGB, like an extracted PNG, through
``upscale_pixels``), (2) the video job's ``luma`` path and (3) its ``rgb`` path, the two
written losslessly (FFV1) in the clip's own yuv420p. Reported: PSNR on Y (rgb2ycbcr of the
RGB outputs, border of 2 shaved) against the HR frames and against the image path, and the
seconds per frame of each video path.

``throughput``: frames per second for ``--size`` (default 640x480 -> 1280x960), a libx264
CRF 18 (preset medium) source with an AAC-free FLAC audio track, three ways to the same
libx264 CRF 18 medium output: (a) ``run_video_job`` (decode | infer | encode overlapped,
audio copied); (b) the usual recipe: frames extracted to PNG (PyAV), ``run_job`` on the
folder (the ``vdsr upscale`` library call), the PNGs encoded to a video (PyAV, no audio).
Writes benchmarks/results/video-<part>.json and prints a Markdown table.

    python benchmarks/video.py paths --frames 6
    python benchmarks/video.py throughput --frames 4 --size 640x480
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vdsr_deploy import protocol
from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.environment import cpu_model
from vdsr_deploy.imageio import quantize, read_image, write_image
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.job.video import VideoJobConfig, run_video_job
from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runtime.prepare import open_runner
from vdsr_deploy.videoio import frames as videoframes

ROOT = Path(__file__).resolve().parents[1]
ORACLE = ROOT.parent / "shared" / "data" / "oracles" / "matlab" / "butterfly_x2.npz"
RESULTS = ROOT / "benchmarks" / "results"
MS = Fraction(1, 1000)


def write_clip(path: Path, frames: list[np.ndarray], codec: str, options: dict[str, str], audio: bool) -> None:
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as output:
        video = output.add_stream(codec, rate=24)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = MS
        video.codec_context.colorspace = video.codec_context.color_primaries = video.codec_context.color_trc = 6
        video.codec_context.color_range = 1
        video.codec_context.options = options
        sound = output.add_stream("flac", rate=8000, layout="mono") if audio else None
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=6, dst_color_range=1
            )
            frame.pts, frame.time_base = index * 42, MS
            for packet in video.encode(frame):
                output.mux(packet)
        for packet in video.encode(None):
            output.mux(packet)
        if sound is not None:
            seconds = len(frames) * 0.042
            for index in range(int(seconds * 4) + 1):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 2000), np.float32), format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, index * 2000
                for packet in sound.encode(chunk):
                    output.mux(packet)
            for packet in sound.encode(None):
                output.mux(packet)


def decoded(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


def psnr_y(rgb: np.ndarray, reference: np.ndarray, shave: int = 2) -> float:
    a = protocol.rgb2ycbcr(rgb.astype(np.float64) / 255.0)[..., 0] * 255.0
    b = protocol.rgb2ycbcr(reference.astype(np.float64) / 255.0)[..., 0] * 255.0
    a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def runner_for(work: Path) -> Any:
    spec = RunnerSpec(backend="onnxruntime", precision="fp32", engines_dir=work / "engines")
    return open_runner(spec, tiling=TileConfig(), batch=4)


def paths(count: int) -> dict[str, Any]:
    hr_image = np.load(ORACLE)["hr_rgb_uint8"]
    hr = [hr_image[8 * i : 8 * i + 192, 4 * i : 4 * i + 192] for i in range(count)]
    lr = [quantize(np.clip(protocol.imresize(h / 255.0, 0.5), 0, 1), 8) for h in hr]
    pipeline = PipelineConfig(scale=2.0, tiling=TileConfig(), batch=4)
    result: dict[str, Any] = {"frames": count, "hr": "192x192 windows of Set5 butterfly, x2"}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        clip = work / "lr.mkv"
        write_clip(clip, lr, "ffv1", {}, audio=False)
        with runner_for(work) as runner:
            outputs: dict[str, list[np.ndarray]] = {"bicubic": [], "image": []}
            for frame in decoded(clip):
                rgb = videoframes.frame_rgb(frame, 8)
                outputs["bicubic"].append(quantize(np.clip(protocol.imresize(rgb / 255.0, 2.0), 0, 1), 8))
                outputs["image"].append(quantize(upscale_pixels(rgb.astype(np.float32) / 255.0, runner, pipeline), 8))
            seconds: dict[str, float] = {}
            for repeat in range(2):  # interleaved, best of two: a busy machine slows both alike
                for path in ("luma", "rgb"):
                    target = work / f"{path}-{repeat}.mkv"
                    config = VideoJobConfig(clip, target, pipeline=pipeline, codec="ffv1", frames=path)
                    started = time.perf_counter()
                    run_video_job(config, runner)
                    took = (time.perf_counter() - started) / count
                    seconds[path] = min(seconds.get(path, took), took)
                    outputs[path] = [videoframes.frame_rgb(f, 8) for f in decoded(target)]
        for name, frames in outputs.items():
            result[name] = {
                "psnr_y_vs_hr": float(np.mean([psnr_y(o, h) for o, h in zip(frames, hr, strict=True)])),
                "psnr_y_vs_image_path": float(
                    np.mean([psnr_y(o, i) for o, i in zip(frames, outputs["image"], strict=True)])
                )
                if name != "image"
                else None,
                "max_abs_rgb_vs_image_path": int(
                    max(np.abs(o.astype(int) - i).max() for o, i in zip(frames, outputs["image"], strict=True))
                ),
                "seconds_per_frame": seconds.get(name),
            }
    return result


def throughput(count: int, size: tuple[int, int]) -> dict[str, Any]:
    width, height = size
    hr_image = np.load(ORACLE)["hr_rgb_uint8"]
    big = protocol.imresize(hr_image / 255.0, output_shape=(height + 8 * count, width + 8 * count))
    frames = [quantize(np.clip(big[8 * i : 8 * i + height, 8 * i : 8 * i + width], 0, 1), 8) for i in range(count)]
    pipeline = PipelineConfig(scale=2.0, tiling=TileConfig(), batch=4)
    x264 = {"crf": "18", "preset": "medium"}
    result: dict[str, Any] = {"frames": count, "size": f"{width}x{height}", "codec": "libx264 crf 18 medium"}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        clip = work / "in.mkv"
        write_clip(clip, frames, "libx264", x264, audio=True)
        with runner_for(work) as runner:
            runner.infer(np.zeros((1, 1, 64, 64), np.float32))  # warm-up
            started = time.perf_counter()
            run_video_job(VideoJobConfig(clip, work / "video.mkv", pipeline=pipeline, codec="libx264"), runner)
            video_seconds = time.perf_counter() - started
            started = time.perf_counter()
            pngs = work / "png"
            pngs.mkdir()
            for index, frame in enumerate(decoded(clip)):
                write_image(pngs / f"{index:05d}.png", videoframes.frame_rgb(frame, 8) / 255.0)
            extract = time.perf_counter() - started
            job = JobConfig(inputs=(str(pngs),), output=work / "png_x2", pipeline=pipeline)
            run_job(job, runner)
            upscale = time.perf_counter() - started - extract
            outputs = sorted((work / "png_x2").glob("*.png"))
            write_clip(work / "png.mkv", [read_image(p).samples for p in outputs], "libx264", x264, audio=False)
            png_seconds = time.perf_counter() - started
    result["video_job"] = {"seconds": video_seconds, "fps": count / video_seconds}
    result["png_route"] = {
        "seconds": png_seconds,
        "fps": count / png_seconds,
        "extract_seconds": extract,
        "upscale_seconds": upscale,
        "encode_seconds": png_seconds - extract - upscale,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("paths", "throughput"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    if args.part == "paths":
        result = paths(args.frames)
    else:
        width, height = (int(v) for v in args.size.split("x"))
        result = throughput(args.frames, (width, height))
    result |= {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "note": args.note,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"video-{args.part}{'-' + args.size if args.part == 'throughput' else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

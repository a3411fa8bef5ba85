"""URI inputs and outputs (vdsr_deploy.job.remote): file:// through pyarrow's LocalFileSystem, and
s3:// against a real S3 API (moto's local server; skipped when moto is not installed)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.job import JobConfig, JobSummary, plan_outputs, remote, run_job
from vdsr_deploy.job.manifest import MANIFEST_NAME
from vdsr_deploy.job.remote import RemotePath, location
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig

pyarrow_fs = pytest.importorskip("pyarrow.fs")

TILING = TileConfig(tile=40, halo=3)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Manifests of URI outputs go to a fresh state folder; registered filesystems are undone."""
    monkeypatch.setenv("VDSR_STATE_DIR", str(tmp_path / "state"))
    saved = remote.registered_filesystems()
    yield tmp_path / "state"
    remote._filesystems.clear()
    remote._filesystems.update(saved)


@pytest.fixture
def runner() -> Iterator[TorchRunner]:
    torch.manual_seed(0)
    with TorchRunner(VDSR(depth=3, channels=4).eval(), channels_last=False) as active:
        yield active


def smooth(height: int, width: int, channels: int) -> NDArray[np.uint8]:
    y, x = np.mgrid[0:height, 0:width]
    planes = [((x * (3 + c) + y * (5 - c)) % 256) for c in range(channels)]
    return np.stack(planes, axis=2).astype(np.uint8)


def make_folder(folder: Path) -> None:
    """Odd sizes, RGB/RGBA/16-bit gray PNG and a JPEG, a subfolder, and files that are not inputs."""
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(smooth(41, 57, 3)).save(folder / "rgb.png")
    Image.fromarray(smooth(45, 38, 4), "RGBA").save(folder / "sub" / "alpha.png")
    gray16 = (smooth(43, 50, 1)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    Image.fromarray(smooth(39, 61, 3)).save(folder / "sub" / "photo.jpg", quality=90)
    (folder / "notes.txt").write_text("not an input: no image extension")


def job(inputs: list[str], output: str | Path, **options: Any) -> JobConfig:
    pipeline = PipelineConfig(scale=2.0, tiling=TILING, batch=1)
    return JobConfig(inputs=tuple(inputs), output=location(output), pipeline=pipeline, **options)


def local_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def run(config: JobConfig, runner: TorchRunner) -> JobSummary:
    return run_job(config, runner, stop=threading.Event())


# ---------------------------------------------------------------------------------------------
# Names


def test_uris_become_remote_paths_and_keep_their_names() -> None:
    for uri in ("s3://bucket/scans/a.png", "gs://b/x", "file:///tmp/x/y.png", "hdfs://host/data"):
        path = location(uri)
        assert isinstance(path, RemotePath) and str(path) == uri
    out = location("s3://bucket/out")
    assert str(out / "sub" / "a.jpg") == "s3://bucket/out/sub/a.jpg"
    assert str(location("s3:/bucket/out")) == "s3://bucket/out"  # what Path() makes of a URI
    assert location("s3://bucket/x/a.png").fs_path == "bucket/x/a.png"
    assert location("file:///tmp/x").fs_path == "/tmp/x"
    for plain in ("photos/a.png", "/abs/b.png", "C:/x"):
        assert not isinstance(location(plain), RemotePath)
    assert remote.manifest_path(location("s3://b/out"), "m") != remote.manifest_path(location("s3://b/out2"), "m")


def test_glob_translation_follows_python_glob() -> None:
    import re

    def matches(pattern: str, key: str) -> bool:
        return re.fullmatch(remote._translate(tuple(pattern.split("/"))), key) is not None

    assert matches("*.png", "a.png") and not matches("*.png", "sub/a.png")
    assert matches("**/*.png", "a.png") and matches("**/*.png", "x/y/a.png")
    assert matches("sub/?.p[nN]g", "sub/a.pNg") and not matches("sub/?.p[!nN]g", "sub/a.png")


# ---------------------------------------------------------------------------------------------
# file:// through pyarrow's LocalFileSystem


def test_file_uri_job_equals_the_local_run_and_resumes(tmp_path: Path, runner: TorchRunner) -> None:
    make_folder(tmp_path / "in")
    local = run(job([str(tmp_path / "in")], tmp_path / "local"), runner)
    assert local.ok and len(local.done) == 4
    expected = local_files(tmp_path / "local")

    uri_in, uri_out = f"file://{tmp_path / 'in'}", f"file://{tmp_path / 'out'}"
    summary = run(job([uri_in], uri_out), runner)
    assert summary.ok and len(summary.done) == 4
    assert local_files(tmp_path / "out") == expected  # byte-identical, same tree, no temporary
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()  # kept in the state folder instead
    assert {str(item.target) for item in summary.done} == {f"{uri_out}/{name}" for name in expected}

    again = run(job([uri_in], uri_out), runner)
    assert not again.done and len(again.skipped) == 4  # resumes exactly
    (tmp_path / "out" / "sub" / "alpha.png").write_bytes(b"damaged")
    third = run(job([uri_in], uri_out), runner)
    assert [item.target.name for item in third.done] == ["alpha.png"]
    assert local_files(tmp_path / "out") == expected


def test_local_and_uri_sides_mix(tmp_path: Path, runner: TorchRunner) -> None:
    make_folder(tmp_path / "in")
    expected = local_files(tmp_path / "in")  # only the names matter here
    to_local = run(job([f"file://{tmp_path / 'in'}"], tmp_path / "a"), runner)
    from_local = run(job([str(tmp_path / "in" / "sub")], f"file://{tmp_path / 'b'}"), runner)
    assert to_local.ok and from_local.ok
    assert set(local_files(tmp_path / "a")) == set(expected) - {"notes.txt"}
    assert (tmp_path / "a" / MANIFEST_NAME).exists()  # a local output keeps its manifest in place
    assert set(local_files(tmp_path / "b")) == {"alpha.png", "photo.jpg"}
    assert local_files(tmp_path / "a")["sub/alpha.png"] == local_files(tmp_path / "b")["alpha.png"]


def test_uri_globs_plan_like_local_globs(tmp_path: Path) -> None:
    make_folder(tmp_path / "in")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"x")
    for pattern in ("**/*.png", "sub/*", "*.png"):
        local, _ = plan_outputs(job([str(tmp_path / "in" / pattern)], tmp_path / "out"))
        uri, _ = plan_outputs(job([f"file://{tmp_path / 'in' / pattern}"], f"file://{tmp_path / 'out'}"))
        assert [str(i.target) for i in uri] == [f"file://{i.target}" for i in local], pattern
        assert local


# ---------------------------------------------------------------------------------------------
# s3:// against moto's S3 server


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, Any]]:
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "endpoint_override": f"{host}:{port}",
        "scheme": "http",
        "access_key": "test",
        "secret_key": "test",
        "region": "us-east-1",
        "allow_bucket_creation": True,
    }
    yield options
    server.stop()


@pytest.fixture
def s3(s3_server: dict[str, Any], request: pytest.FixtureRequest) -> Any:
    """A fresh bucket, registered for s3:// URIs."""
    filesystem = pyarrow_fs.S3FileSystem(**s3_server)
    bucket = f"t{abs(hash(request.node.name)) % 10**8}"
    filesystem.create_dir(bucket)
    remote.register_filesystem("s3://", filesystem)
    return filesystem, bucket


def upload(filesystem: Any, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with filesystem.open_output_stream(f"{prefix}/{path.relative_to(folder).as_posix()}") as out:
                out.write(path.read_bytes())


def bucket_files(filesystem: Any, prefix: str) -> dict[str, bytes]:
    found = filesystem.get_file_info(pyarrow_fs.FileSelector(prefix, recursive=True, allow_not_found=True))
    result: dict[str, bytes] = {}
    for info in found:
        if info.type == pyarrow_fs.FileType.File:
            with filesystem.open_input_stream(info.path) as stream:
                result[info.path[len(prefix) + 1 :]] = stream.read()
    return result


def test_s3_to_s3_equals_the_local_run_resumes_and_reports_bad_objects(
    tmp_path: Path, runner: TorchRunner, s3: tuple[Any, str]
) -> None:
    filesystem, bucket = s3
    make_folder(tmp_path / "in")
    local = run(job([str(tmp_path / "in")], tmp_path / "local"), runner)
    expected = local_files(tmp_path / "local")
    upload(filesystem, tmp_path / "in", f"{bucket}/scans")
    with filesystem.open_output_stream(f"{bucket}/scans/broken.png") as out:
        out.write(b"not an image at all")
    with filesystem.open_output_stream(f"{bucket}/scans/sub/empty.jpg") as out:
        pass

    scans, out_uri = f"s3://{bucket}/scans", f"s3://{bucket}/out"
    missing = f"s3://{bucket}/nowhere/x.png"
    summary = run(job([scans, missing], out_uri), runner)
    assert bucket_files(filesystem, f"{bucket}/out") == expected  # byte-identical, no temporary key
    assert len(summary.done) == len(local.done) == 4
    assert {str(f.source): f.reason for f in summary.failed} == {
        f"{scans}/broken.png": "not a recognised image format",
        f"{scans}/sub/empty.jpg": "empty file (0 bytes)",
        missing: "no such file, folder, or matching glob",
    }

    again = run(job([scans], out_uri), runner)
    assert not again.done and len(again.skipped) == 4  # the manifest (state folder) resumes it
    filesystem.delete_file(f"{bucket}/out/gray16.png")
    with filesystem.open_output_stream(f"{bucket}/out/.gray16.png.k1ll3d.part") as out:
        out.write(b"left by a killed process")
    third = run(job([scans], out_uri), runner)
    assert [str(item.target) for item in third.done] == [f"{out_uri}/gray16.png"]
    assert bucket_files(filesystem, f"{bucket}/out") == expected


def test_s3_object_vanishing_after_planning_is_reported(
    tmp_path: Path, runner: TorchRunner, s3: tuple[Any, str]
) -> None:
    filesystem, bucket = s3
    Image.fromarray(smooth(30, 33, 3)).save(tmp_path / "a.png")
    upload(filesystem, tmp_path, f"{bucket}/in")
    from vdsr_deploy.job.worker import UpscaleWorker, WorkerTask

    worker = UpscaleWorker(0, job([f"s3://{bucket}/in"], f"s3://{bucket}/out"), lambda: runner)
    worker.adopt(runner)
    tasks = [
        WorkerTask(0, f"s3://{bucket}/in/a.png", f"s3://{bucket}/out/a.png", "png"),
        WorkerTask(1, f"s3://{bucket}/in/gone.png", f"s3://{bucket}/out/gone.png", "png"),
    ]
    results = {r.index: r for r in worker.process(tasks).items}
    assert results[1].state == "failed" and results[1].reason == f"s3://{bucket}/in/gone.png: no such file"
    assert results[0].state == "done" and results[0].temporary.startswith(f"s3://{bucket}/out/.a.png.")
    uploaded = bucket_files(filesystem, f"{bucket}/out")  # only the temporary key, complete
    assert list(uploaded) == [results[0].temporary.split("/out/")[1]] and results[0].temporary.endswith(".part")
    assert len(next(iter(uploaded.values()))) == results[0].size
    assert not location(f"s3://{bucket}/out/a.png").exists()  # never written under the final key


def test_cli_upscales_file_uris_and_resumes(tmp_path: Path, tiny_weights: Path) -> None:
    """`vdsr upscale URI -o URI` (typer turns the option into a Path: scheme:/x must survive)."""
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app

    make_folder(tmp_path / "in")
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    command = ["upscale", f"file://{tmp_path / 'in'}", "-o", f"file://{tmp_path / 'out'}", "-w", str(tiny_weights)]
    command += ["--backend", "torch", "--tile", "40", "--halo", "4", "--quiet"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 1, first.output
    text = "".join(first.output.split())  # rich wraps long lines
    assert f"file://{tmp_path / 'in' / 'bad.png'}:notarecognisedimageformat" in text
    assert set(local_files(tmp_path / "out")) == {"rgb.png", "gray16.png", "sub/alpha.png", "sub/photo.jpg"}
    second = CliRunner().invoke(app, command)
    assert "0done,4skipped,1failed" in "".join(second.output.split()), second.output


def test_each_bucket_gets_its_own_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27 (kind 4, the fallback that never ran): two buckets (which S3 may place in two
    regions) must not share the filesystem opened for the first; each is opened once, and a
    filesystem registered for one bucket serves that bucket only, the scheme's default the rest."""
    import types

    import pyarrow

    opened: list[str] = []

    def from_uri(uri: str) -> tuple[object, str]:
        opened.append(uri)
        return (f"filesystem for {uri.split('/')[2]}", uri)

    fake = types.SimpleNamespace(FileSystem=types.SimpleNamespace(from_uri=from_uri))
    monkeypatch.setattr(pyarrow, "fs", fake)  # what `from pyarrow import fs` finds
    remote._filesystems.clear()
    west, east = location("s3://bucket-west/a/x.png"), location("s3://bucket-east/b/y.png")
    assert remote._filesystem(west) == "filesystem for bucket-west"
    assert remote._filesystem(east) == "filesystem for bucket-east"
    assert remote._filesystem(location("s3://bucket-west/other.png")) == "filesystem for bucket-west"
    assert [uri.split("/")[2] for uri in opened] == ["bucket-west", "bucket-east"]  # once each
    remote._filesystems.clear()
    remote.register_filesystem("s3://private", "private endpoint")
    remote.register_filesystem("s3://", "default endpoint")
    assert remote._filesystem(location("s3://private/k.png")) == "private endpoint"
    assert remote._filesystem(location("s3://public/k.png")) == "default endpoint"
    assert remote._filesystem(location("gs://elsewhere/k.png")) == "filesystem for elsewhere"

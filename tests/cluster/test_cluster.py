"""`vdsr upscale --cluster`: one local Ray instance for the module, declaring 2 CPUs and 2
(fake) GPUs, so workers are placed as on a GPU node (one per GPU) while running on the CPU.

Workers run a tiny seeded VDSR on the PyTorch CPU runner; the runner factories below are
pickled by value (this folder is not importable by the Ray workers). Every test is bounded
by an alarm: Ray waits forever for resources a cluster lacks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.imageio import stale_temporaries
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.job.lock import LOCK_NAME, FolderInUseError, JobLock
from vdsr_deploy.job.manifest import MANIFEST_NAME, Manifest
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo

ray = pytest.importorskip("ray")

from vdsr_deploy.cluster import (  # noqa: E402 - after the skip
    ClusterConfig,
    ClusterError,
    Placement,
    local_runtime_env,
    plan_placement,
    run_cluster_job,
)

TILING = TileConfig(tile=40, halo=3)
TEST_SECONDS = 120
REPO = Path(__file__).resolve().parents[2]
POISON_HEIGHT = 34  # output rows of the 17-row image: no other fixture has them


def tiny_model() -> VDSR:
    torch.manual_seed(0)
    return VDSR(depth=3, channels=4).eval()


class FaultyRunner(Runner):
    """The tiny model; the worker process dies (``os._exit``) on a tile ``POISON_HEIGHT``
    rows high when ``poison``, and once on its first tile when ``die_once`` names a marker
    file that does not exist yet (the first worker to create it dies)."""

    def __init__(self, die_once: str, poison: bool) -> None:
        super().__init__()
        self.inner = TorchRunner(tiny_model(), channels_last=False)
        self.die_once = die_once
        self.poison = poison

    @property
    def info(self) -> RunnerInfo:
        return self.inner.info

    def activate(self) -> None:
        self.inner.__enter__()

    def deactivate(self) -> None:
        self.inner.__exit__(None, None, None)

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if self.poison and batch.shape[2] == POISON_HEIGHT:
            os._exit(3)
        if self.die_once:
            try:
                os.close(os.open(self.die_once, os.O_CREAT | os.O_EXCL))
                os._exit(3)
            except FileExistsError:
                pass
        return self.inner.infer(batch)


class Factory:
    """``open_runner`` for :func:`run_cluster_job`: placement -> zero-argument factory."""

    def __init__(self, die_once: str = "", poison: bool = False) -> None:
        self.die_once = die_once
        self.poison = poison

    def __call__(self, placement: Placement) -> Any:
        return lambda: FaultyRunner(self.die_once, self.poison)


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"test ran past {TEST_SECONDS} s (a Ray wait that never ends?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
    yield
    ray.shutdown()


def smooth(height: int, width: int, channels: int) -> NDArray[np.uint8]:
    y, x = np.mgrid[0:height, 0:width]
    planes = [((x * (3 + c) + y * (5 - c)) % 256) for c in range(channels)]
    return np.stack(planes, axis=2).astype(np.uint8)


def make_folder(folder: Path, count: int = 4) -> None:
    """Odd sizes; RGB, RGBA, gray 16-bit PNG, a JPEG, one in a subfolder."""
    (folder / "sub").mkdir(parents=True)
    for index in range(count):
        Image.fromarray(smooth(41 + 3 * index, 57 - index, 3)).save(folder / f"rgb{index}.png")
    Image.fromarray(smooth(45, 38, 4), "RGBA").save(folder / "sub" / "alpha.png")
    gray16 = (smooth(43, 50, 1)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    Image.fromarray(smooth(39, 61, 3)).save(folder / "photo.jpg", quality=90)


def job(inputs: Path, output: Path, **options: Any) -> JobConfig:
    pipeline = PipelineConfig(scale=2.0, tiling=TILING, batch=1)
    return JobConfig(inputs=(str(inputs),), output=output, pipeline=pipeline, **options)


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def single_process(inputs: Path, output: Path) -> dict[str, bytes]:
    """What `vdsr upscale` makes, with the workers' thread count (Ray starts them with
    OMP_NUM_THREADS=1): PyTorch's CPU convolutions round differently with other counts,
    which 16-bit outputs show."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with TorchRunner(tiny_model(), channels_last=False) as runner:
            summary = run_job(job(inputs, output), runner)
    finally:
        torch.set_num_threads(threads)
    assert summary.ok, summary.failed
    return files(output)


def assert_recorded(output: Path, names: list[str]) -> None:
    manifest = Manifest(output)
    for name in names:
        assert manifest.get(output / name) is not None, name


def test_cluster_outputs_equal_single_process_and_bad_files_are_reported(tmp_path: Path) -> None:
    make_folder(tmp_path / "in")
    expected = single_process(tmp_path / "in", tmp_path / "local")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".rgb0.png.k1ll3d.part").write_bytes(b"left by a killed worker")
    events: list[dict[str, Any]] = []
    summary = run_cluster_job(job(tmp_path / "in", tmp_path / "out"), ClusterConfig(), Factory(), events.append)
    assert files(tmp_path / "out") == expected  # byte-identical, same names, no temporary left
    assert {f.source.name: f.reason for f in summary.failed} == {
        "broken.png": "not a recognised image format",
        "empty.jpg": "empty file (0 bytes)",
    }
    assert len(summary.done) == len(expected) and not summary.unfinished
    assert_recorded(tmp_path / "out", list(expected))
    report = summary.to_dict()["cluster"]
    assert report["workers"] == 2 and report["worker_resources"]["GPU"] == 1.0  # one per GPU
    assert sorted(g for w in report["worker_placement"] for g in w["gpu_ids"]) == ["0", "1"]
    assert sum(node["images"] for node in report["nodes"]) == len(expected)
    assert {e["event"] for e in events} >= {"start", "done", "failed", "finished"}

    again = run_cluster_job(job(tmp_path / "in", tmp_path / "out"), ClusterConfig(), Factory())
    assert len(again.skipped) == len(expected) and not again.done  # resumes like one machine


def test_killed_worker_is_retried_and_a_poison_image_is_reported(tmp_path: Path) -> None:
    make_folder(tmp_path / "in")
    expected = single_process(tmp_path / "in", tmp_path / "local")
    Image.fromarray(smooth(17, 50, 3)).save(tmp_path / "in" / "poison.png")
    factory = Factory(die_once=str(tmp_path / "died-once"), poison=True)
    summary = run_cluster_job(job(tmp_path / "in", tmp_path / "out"), ClusterConfig(retries=1, chunk=2), factory)
    assert (tmp_path / "died-once").exists()  # a worker really died mid-image
    assert files(tmp_path / "out") == expected
    assert_recorded(tmp_path / "out", list(expected))
    assert [(f.source.name, f.reason) for f in summary.failed] == [
        ("poison.png", "its worker failed 2 times while processing it (the worker process died)")
    ]
    retried = summary.cluster["retries"]
    assert any(r["file"].endswith("poison.png") for r in retried)
    assert len(retried) >= 2  # the image held by the worker that died once, and the poison


def test_s3_inputs_and_outputs_on_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """s3:// in and out through a real S3 API (moto's local server): workers download and
    upload with the driver's registered filesystem; outputs equal the local run, re-run resumes."""
    moto_server = pytest.importorskip("moto.server")
    from pyarrow import fs

    from vdsr_deploy.job import remote

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    monkeypatch.setenv("VDSR_STATE_DIR", str(tmp_path / "state"))
    make_folder(tmp_path / "in", count=2)
    expected = single_process(tmp_path / "in", tmp_path / "local")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = remote.registered_filesystems()
    try:
        host, port = server.get_host_and_port()
        s3 = fs.S3FileSystem(
            endpoint_override=f"{host}:{port}", scheme="http", access_key="k", secret_key="s",
            region="us-east-1", allow_bucket_creation=True,
        )  # fmt: skip
        s3.create_dir("bucket")
        for path in sorted((tmp_path / "in").rglob("*")):
            if path.is_file():
                with s3.open_output_stream(f"bucket/in/{path.relative_to(tmp_path / 'in').as_posix()}") as out:
                    out.write(path.read_bytes())
        with s3.open_output_stream("bucket/in/broken.png") as out:
            out.write(b"not an image at all")
        remote.register_filesystem("s3://bucket", s3)
        config = job(Path("unused"), remote.location("s3://bucket/out"))
        config = dataclasses.replace(config, inputs=("s3://bucket/in",))
        summary = run_cluster_job(config, ClusterConfig(), Factory())
        uploaded = s3.get_file_info(fs.FileSelector("bucket/out", recursive=True))
        made = {
            info.path[len("bucket/out/") :]: s3.open_input_stream(info.path).read()
            for info in uploaded
            if info.type == fs.FileType.File
        }
        assert made == expected  # byte-identical, same names, no temporary key left
        assert [(str(f.source), f.reason) for f in summary.failed] == [
            ("s3://bucket/in/broken.png", "not a recognised image format")
        ]
        again = run_cluster_job(config, ClusterConfig(), Factory())
        assert len(again.skipped) == len(expected) and not again.done
    finally:
        remote._filesystems.clear()
        remote._filesystems.update(saved)
        server.stop()


def test_workers_the_cluster_cannot_place_are_an_error_not_a_hang(tmp_path: Path) -> None:
    make_folder(tmp_path / "in", count=1)
    inputs, output = tmp_path / "in", tmp_path / "out"
    too_many = ClusterConfig(actors=3, gpus_per_actor=1)
    with pytest.raises(ClusterError, match=r"3 workers asking for 1 GPU each need 3 GPU; this Ray instance has 2"):
        run_cluster_job(job(inputs, output), too_many, Factory())  # local: refused at once
    joined = ClusterConfig(address="auto", actors=3, gpus_per_actor=1, start_timeout=3)
    with pytest.raises(ClusterError, match=r"of 3 workers were not placed within 3 s.*2 CPU, 2 GPU"):
        run_cluster_job(job(inputs, output), joined, Factory())  # a cluster may grow: bounded wait
    assert not (output / LOCK_NAME).exists()  # released on the error path too


def test_a_cluster_job_and_a_single_machine_job_exclude_each_other(tmp_path: Path) -> None:
    """One lock file for both: a cluster job is refused while a live single-machine job holds
    the folder (before Ray is asked for anything), and a single-machine job (another process,
    tests/job_child.py) is refused while the cluster driver holds it."""
    make_folder(tmp_path / "in", count=1)
    inputs, output = tmp_path / "in", tmp_path / "out"
    with JobLock(output), pytest.raises(FolderInUseError, match=r"another vdsr job is writing to this folder"):
        run_cluster_job(job(inputs, output), ClusterConfig(), Factory())
    assert not list(output.iterdir())  # refused: nothing written, the holder's lock released

    refusals: list[subprocess.CompletedProcess[str]] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "start":  # the driver holds the lock and its workers are ready
            child = [sys.executable, str(REPO / "tests" / "job_child.py"), str(output), str(inputs)]
            refusals.append(subprocess.run(child, capture_output=True, text=True, timeout=TEST_SECONDS))

    summary = run_cluster_job(job(inputs, output), ClusterConfig(), Factory(), on_event)
    assert summary.ok and summary.done
    [refused] = refusals
    assert refused.returncode == 1, refused.stderr
    assert f"error: {output}: another vdsr job is writing to this folder (PID {os.getpid()}" in refused.stderr
    assert not (output / LOCK_NAME).exists()  # released after the job
    with JobLock(output):  # and free for the next job
        pass


def test_worker_temporaries_are_owned_by_the_driver(tmp_path: Path) -> None:
    """A worker names its temporaries after the driver's PID: another job's cleanup keeps
    them while the driver lives; the driver itself (their owner) removes them."""
    from vdsr_deploy.job.worker import _deliver

    made = tmp_path / "made.png"
    made.write_bytes(b"complete output")
    target = tmp_path / "out" / "a.png"
    live_driver = _deliver(made, target, os.getppid())  # a live process other than this one
    assert live_driver.name.startswith(f".a.png.{os.getppid()}.") and live_driver.read_bytes() == b"complete output"
    assert stale_temporaries(target) == []  # a live job's: not stale to anyone else
    this_driver = _deliver(made, target, os.getpid())
    assert stale_temporaries(target) == [this_driver]  # its owner removes it when it ends


def test_placement_rules() -> None:
    gpu_node = {"CPU": 16.0, "GPU": 4.0}
    assert plan_placement(ClusterConfig(), gpu_node, "auto") == Placement(4, 1.0, 1.0, 0)
    cpu_only = plan_placement(ClusterConfig(actors=2), {"CPU": 2.0}, "auto")
    assert cpu_only == Placement(2, 0.5, 0.0, 1)  # a fraction of a CPU each: a core stays free
    assert plan_placement(ClusterConfig(), gpu_node, "cpu").gpus == 0.0
    assert plan_placement(ClusterConfig(), {"CPU": 8.0}, "auto").actors == 4


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_sigint_exits_130_and_the_rerun_resumes(tmp_path: Path, restore_torch_threads: None) -> None:
    """A real SIGINT to a `vdsr upscale --cluster local` process (its own Ray instance) exits
    130 leaving only complete, recorded outputs; the re-run (in this process: ``local``
    reuses the instance held here) skips exactly those, makes the rest, and everything equals
    plain `vdsr upscale` (same --threads as the workers)."""
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app
    from vdsr_deploy.model.weights import save_weights

    make_folder(tmp_path / "in", count=30)
    weights = save_weights(tiny_model(), tmp_path / "tiny.safetensors")
    common = ["--weights", str(weights), "--backend", "torch", "--device", "cpu", "--threads", "1"]
    common += ["--tile", "40", "--halo", "3", "--batch", "1", "--quiet", "--report", str(tmp_path / "r.json")]
    plain = CliRunner().invoke(app, ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "plain"), *common])
    assert plain.exit_code == 0, plain.output
    expected = files(tmp_path / "plain")
    args = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *common, "--cluster", "local"]
    args += ["--actors", "2", "--retries", "1"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as from a bare checkout
    process = subprocess.Popen(
        [sys.executable, "-m", "vdsr_deploy.cli", *args], stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        start_new_session=True,  # Ray's shutdown signals stay in its own process group
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # printed when the workers are ready and the job starts
    assert "Ray workers" in line, line
    manifest = tmp_path / "out" / MANIFEST_NAME
    while not (manifest.exists() and manifest.read_text()) and process.poll() is None:
        time.sleep(0.05)  # polls for a state (a first output recorded), not a duration
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=TEST_SECONDS)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and report["exit_code"] == 130
    assert len(report["done"]) + len(report["unfinished"]) == len(expected), (report["failed"], stderr)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".part")]
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released on exit 130
    made = files(tmp_path / "out")
    assert made and made == {name: expected[name] for name in made}  # only complete outputs
    assert_recorded(tmp_path / "out", list(made))

    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    again = json.loads((tmp_path / "r.json").read_text())
    assert len(again["skipped"]) == len(made) and not again["failed"]
    assert files(tmp_path / "out") == expected
    assert again["cluster"]["workers"] == 2 and again["cluster"]["worker_resources"] == {"CPU": 0.5, "GPU": 0.0}
    assert sum(node["images"] for node in again["cluster"]["nodes"]) == len(expected) - len(made)


def test_python_callers_get_the_clis_model_identity_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster job from Python records the same model identity as ``vdsr upscale`` (which
    passes it in), so its resume check sees a changed weights file; workers get absolute paths."""
    from vdsr_deploy.backends.registry import RunnerSpec
    from vdsr_deploy.cluster.driver import OpenRunner, with_model_identity

    monkeypatch.chdir(tmp_path)
    Path("w.safetensors").write_bytes(b"weights")
    spec = RunnerSpec(backend="torch", weights=Path("w.safetensors"))
    factory = OpenRunner(spec, TILING, 1)
    assert factory.spec.weights == tmp_path / "w.safetensors"
    config = with_model_identity(job(tmp_path / "in", tmp_path / "out"), factory)
    assert config.model == spec.model_identity() and "w.safetensors:7:" in config.model
    assert with_model_identity(job(tmp_path / "in", tmp_path / "out", model="given"), factory).model == "given"
    assert with_model_identity(job(tmp_path / "in", tmp_path / "out"), Factory()).model == ""



def test_workers_resolve_precision_auto_for_their_own_hardware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vdsr upscale --cluster`` hands ``--precision auto`` to the workers unresolved (each
    worker's ``open_runner`` resolves it for its own GPU and CPU flags): a CPU-only driver
    must not pick a CPU path for GPU workers."""
    from typer.testing import CliRunner

    import vdsr_deploy.cluster
    from vdsr_deploy.cli import app
    from vdsr_deploy.errors import VdsrError
    from vdsr_deploy.model.weights import save_weights

    def fake_run_cluster_job(config: JobConfig, cluster: Any, factory: Any, *args: Any, **kwargs: Any) -> Any:
        raise VdsrError(f"workers would open precision={factory.spec.precision} backend={factory.spec.backend}")

    monkeypatch.setattr(vdsr_deploy.cluster, "run_cluster_job", fake_run_cluster_job)
    make_folder(tmp_path / "in", count=1)
    weights = save_weights(tiny_model(), tmp_path / "tiny.safetensors")
    result = CliRunner().invoke(app, [
        "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights),
        "--engines-dir", str(tmp_path / "e"), "--tile", "40", "--halo", "3", "--cluster", "local",
    ])  # fmt: skip
    assert "workers would open precision=auto backend=auto" in result.output, result.output

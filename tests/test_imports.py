"""Importing the package and `vdsr --help` must not load heavy optional runtimes."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("onnxruntime", "openvino", "tensorrt", "cuda", "matplotlib", "ray", "tritonclient", "grpc", "pyarrow", "av")


def modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_import_package_is_light() -> None:
    loaded = modules_after("import vdsr_deploy")
    assert not {m for m in loaded if m.split(".")[0] in (*HEAVY, "torch")}


def test_submodules_import_without_runtimes() -> None:
    loaded = modules_after(
        "import vdsr_deploy.cli, vdsr_deploy.runtime.prepare, vdsr_deploy.backends.device, "
        "vdsr_deploy.backends.tensorrt.builder, vdsr_deploy.backends.tensorrt.cache, "
        "vdsr_deploy.backends.tensorrt.library, vdsr_deploy.backends.tensorrt.runner, "
        "vdsr_deploy.backends.onnxruntime.runner, vdsr_deploy.backends.openvino.runner, "
        "vdsr_deploy.backends.tensorrt.cuda, vdsr_deploy.planes.tiling, "
        "vdsr_deploy.protocol, vdsr_deploy.cluster, vdsr_deploy.job.worker, vdsr_deploy.runtime.triton, "
        "vdsr_deploy.job.remote, vdsr_deploy.job, vdsr_deploy.videoio, vdsr_deploy.videoio.write, "
        "vdsr_deploy.videoio.frames, vdsr_deploy.job.video"
    )
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_cli_help_is_light() -> None:
    loaded = modules_after(
        "import sys\nfrom typer.testing import CliRunner\nfrom vdsr_deploy.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0, result.output\n"
        "assert 'upscale' in result.output"
    )
    assert not {m for m in loaded if m.split(".")[0] in (*HEAVY, "torch")}


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """pyproject lists packages by name: a new subpackage missing there installs nowhere but
    in an editable checkout."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for top in ("vdsr_deploy", "train")
        for init in (root / top).rglob("__init__.py")
    }
    assert found == listed


def test_video_without_pyav_is_one_clear_sentence() -> None:
    """With PyAV missing (``av`` blocked), the package and the video modules import, and a
    video job says how to install it."""
    code = (
        "import sys\nsys.modules['av'] = None\n"
        "from pathlib import Path\n"
        "from vdsr_deploy.errors import BackendUnavailableError\n"
        "from vdsr_deploy.job.video import VideoJobConfig, plan_video_job\n"
        "try:\n    plan_video_job(VideoJobConfig(Path('a.mkv'), Path('b.mkv')))\n"
        "except BackendUnavailableError as error:\n    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs PyAV" in out and "pip install 'vdsr-deploy[video]'" in out

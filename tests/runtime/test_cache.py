"""The cache folder (issue 26): the user's cache folder by default, moved by $VDSR_CACHE_DIR
or --engines-dir, never ./engines of the folder a command runs from; ``vdsr cache`` lists
and clears it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.cli import app
from vdsr_deploy.runtime.cache import (
    CACHE_DIR_ENV,
    cache_entries,
    clear_cache,
    default_cache_dir,
    human_bytes,
    is_cache_entry,
)
from vdsr_deploy.runtime.prepare import default_engines_dir


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    return result.exit_code, result.output


def test_the_default_is_the_platform_cache_folder_unless_the_variable_moves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "c"))
    assert default_cache_dir() == default_engines_dir() == tmp_path / "c"
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    from platformdirs import user_cache_dir

    default = default_cache_dir()
    assert default == Path(user_cache_dir("vdsr-deploy", appauthor=False)) and default.is_absolute()
    assert tmp_path not in default.parents and default.name != "engines"
    monkeypatch.setenv(CACHE_DIR_ENV, "  ")  # empty: as if unset
    assert default_cache_dir() == default


def test_entries_sizes_and_clearing_keep_what_vdsr_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "vdsr-0123-fp32.onnx").write_bytes(b"x" * 1500)
    (tmp_path / "ort-optimized").mkdir()
    (tmp_path / "ort-optimized" / "a.onnx").write_bytes(b"y" * 700)
    (tmp_path / ".vdsr-0123-int8.onnx.1-2-ab.tmp").write_bytes(b"z")
    (tmp_path / "notes.txt").write_bytes(b"mine")
    entries = {e.path.name: (e.bytes, e.ours) for e in cache_entries(tmp_path)}
    assert entries == {
        "vdsr-0123-fp32.onnx": (1500, True),
        "ort-optimized": (700, True),
        ".vdsr-0123-int8.onnx.1-2-ab.tmp": (1, True),
        "notes.txt": (4, False),
    }
    cleared = clear_cache(tmp_path)
    assert (cleared.removed, cleared.bytes, cleared.kept) == (3, 2201, (tmp_path / "notes.txt",))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert cache_entries(tmp_path / "missing") == [] and not is_cache_entry(Path("engines"))
    assert [human_bytes(n) for n in (578, 5_300_000, 2_000_000_000)] == ["578 B", "5.3 MB", "2.0 GB"]


def test_upscale_caches_in_the_cache_folder_not_the_working_folder(
    tmp_path: Path, tiny_weights: Path, hermetic_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    Image.new("RGB", (24, 20)).save(work / "a.png")
    code, text = invoke("upscale", "a.png", "-o", "out", "-w", str(tiny_weights), "-b", "onnxruntime",
                        "-p", "fp32", "--device", "cpu", "-q")  # fmt: skip
    assert code == 0, text
    assert sorted(p.name for p in work.iterdir()) == ["a.png", "out"]  # no ./engines
    assert any(p.suffix == ".onnx" for p in cache.iterdir())

    code, text = invoke("info")
    assert code == 0 and f"cache dir: {cache} (${CACHE_DIR_ENV};" in text
    code, text = invoke("cache")
    assert code == 0 and text.startswith(f"cache {cache} (from ${CACHE_DIR_ENV}): ") and ".onnx" in text
    code, text = invoke("cache", "--json")
    listed = json.loads(text)
    assert code == 0 and listed["cache_dir"] == str(cache) and listed["total_bytes"] > 0
    code, text = invoke("cache", "--clear")
    assert code == 0 and "cleared " in text and not any(cache.iterdir())


def test_cache_options_good_and_bad_values(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "vdsr-x-fp32.onnx").write_bytes(b"1234")
    code, text = invoke("cache", "--engines-dir", str(other))
    assert code == 0 and text.startswith(f"cache {other} (from --engines-dir): 1 entry, 4 B"), text
    code, text = invoke("cache", "--engines-dir", str(other), "--clear")
    assert code == 0 and "cleared 1 entry, 4 B" in text and not any(other.iterdir())
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, text = invoke("cache", "--engines-dir", str(a_file))
    assert code == 1 and text.strip() == f"error: {a_file}: expected a cache folder, got a file"
    code, text = invoke("cache", "--clear", "yes")
    assert code == 2 and "--clear takes no value" in text
    code, text = invoke("cache", "--json", "--engines-dir", str(tmp_path / "none"))
    assert code == 0 and json.loads(text)["entries"] == []
    code, text = invoke("cache", "--json", "true")
    assert code == 2 and "--json takes no value" in text

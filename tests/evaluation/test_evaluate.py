"""The evaluation protocol's shared pieces: the one image-folder listing (evaluation, parity
and training read folders through it) and the HR reading/cropping parity scores with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError, TrainingError
from vdsr_deploy.evaluation.run import crop_hr
from vdsr_deploy.imageio import write_image
from vdsr_deploy.imageio.folders import hr_luma, hr_pixels, list_images
from vdsr_deploy.parity import folder_images, hr_images


def _image(path: Path, height: int, width: int, channels: int = 3) -> Path:
    pixels = np.random.default_rng(height * width).random((height, width, channels)).astype(np.float32)
    write_image(path, pixels)
    return path


def test_list_images_is_sorted_by_name_and_skips_what_is_not_an_image(tmp_path: Path) -> None:
    b = _image(tmp_path / "b.PNG", 9, 8)
    a = _image(tmp_path / "a.png", 9, 8)
    hidden = _image(tmp_path / ".c.png", 9, 8)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder.png").mkdir()  # a folder with an image's name
    _image(tmp_path / "sub" / "d.png", 9, 8)  # subfolders are not read
    assert list_images(tmp_path) == [hidden, a, b]


def test_list_images_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"missing: not a folder \(it does not exist\)"):
        list_images(tmp_path / "missing")
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    with pytest.raises(InvalidInputError, match=r"file\.png: not a folder$"):
        list_images(a_file)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(InvalidInputError, match=r"empty: no images found \(expected .*\.png"):
        list_images(tmp_path / "empty")


def test_training_parity_and_evaluation_list_the_same_files(tmp_path: Path) -> None:
    from train.data import find_images

    for name in ("z.png", "m.bmp", "a.tif"):
        _image(tmp_path / "hr" / name, 30, 31)
    (tmp_path / "hr" / "skip.txt").write_text("x")
    listed = list_images(tmp_path / "hr")
    assert [p.name for p in listed] == ["a.tif", "m.bmp", "z.png"]
    assert find_images([tmp_path / "hr", tmp_path / "hr"]) == listed + listed
    assert [i.name for i in folder_images(tmp_path / "hr")] == ["a", "m", "z"]
    assert [i.name for i in hr_images(tmp_path / "hr", 2)] == ["a-x2", "m-x2", "z-x2"]
    with pytest.raises(TrainingError, match="does not exist"):
        find_images([tmp_path / "hr", tmp_path / "missing"])


def test_parity_hr_images_follow_the_evaluation_protocol(tmp_path: Path) -> None:
    path = _image(tmp_path / "hr" / "gray.png", 33, 35, channels=1)
    (image,) = hr_images(tmp_path / "hr", 3)
    hr = crop_hr(hr_pixels(path), 3, path)
    assert hr.shape == (33, 33, 3) and np.array_equal(hr[..., 0], hr[..., 2])  # gray as R=G=B
    assert image.hr_y is not None and np.array_equal(image.hr_y, protocol.modcrop(hr_luma(path), 3))
    assert image.pixels.shape == (11, 11, 3) and image.hr_scale == 3
    with pytest.raises(InvalidInputError, match=r"gray\.png: 24x24 is too small to evaluate at x12"):
        hr_images(tmp_path / "hr", 12)

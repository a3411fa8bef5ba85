"""Reading and writing images: modes, 16-bit, metadata, bad files, atomic and streamed writes.

Every fixture is generated here with Pillow (or a tiny hand-written PNG encoder where Pillow
cannot write the file, e.g. 16-bit colour PNG with every filter type).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from vdsr_deploy.errors import ImageReadError, ImageWriteError
from vdsr_deploy.imageio import (
    open_image_writer,
    probe_image,
    quantize,
    read_image,
    stale_temporaries,
    write_image,
)

RNG = np.random.default_rng(7)


def noise(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    high = 65536 if dtype == np.uint16 else 256
    return RNG.integers(0, high, shape).astype(dtype)


def png_chunk(tag: bytes, payload: bytes) -> bytes:
    body = tag + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png16(data: np.ndarray, *, filters: bool = True) -> bytes:
    """Independent reference encoder: 16-bit PNG, filter type = row % 5 (all five filters)."""
    height, width, channels = data.shape
    raw = (
        np.ascontiguousarray(data.astype(">u2")).view(np.uint8).reshape(height, -1).astype(np.int32)
    )
    bpp = 2 * channels
    prior = np.zeros(raw.shape[1], dtype=np.int32)
    lines = []
    for row in range(height):
        x = raw[row]
        a = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int32), prior[:-bpp]])
        kind = row % 5 if filters else 0
        if kind == 0:
            out = x
        elif kind == 1:
            out = x - a
        elif kind == 2:
            out = x - prior
        elif kind == 3:
            out = x - (a + prior) // 2
        else:
            p = a + prior - c
            pa, pb, pc = abs(p - a), abs(p - prior), abs(p - c)
            out = x - np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, prior, c))
        lines.append(bytes([kind]) + (out % 256).astype(np.uint8).tobytes())
        prior = x
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + png_chunk(b"IEND", b"")
    )


# --- modes and bit depths -----------------------------------------------------------------


@pytest.mark.parametrize("mode, channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_8bit_png_round_trip_is_exact(tmp_path: Path, mode: str, channels: int) -> None:
    data = noise((37, 53, channels))
    Image.fromarray(data[..., 0] if channels == 1 else data, mode=mode).save(tmp_path / "in.png")
    image = read_image(tmp_path / "in.png")
    assert image.bit_depth == 8 and image.samples.dtype == np.uint8
    np.testing.assert_array_equal(image.samples, data)
    np.testing.assert_allclose(image.pixels, data / 255.0, atol=1e-7)
    write_image(tmp_path / "out.png", image.pixels, bit_depth=8)
    with Image.open(tmp_path / "out.png") as reread:
        assert reread.mode == mode
        assert np.array_equal(np.asarray(reread).reshape(data.shape), data)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_in_16bit_out(tmp_path: Path, channels: int) -> None:
    data = noise((29, 31, channels), np.uint16)
    (tmp_path / "in.png").write_bytes(encode_png16(data))
    image = read_image(tmp_path / "in.png")
    assert image.bit_depth == 16 and image.samples.dtype == np.uint16
    np.testing.assert_array_equal(image.samples, data)
    write_image(tmp_path / "out.png", image.pixels, bit_depth=16)
    again = read_image(tmp_path / "out.png")
    assert again.bit_depth == 16
    np.testing.assert_array_equal(again.samples, data)
    with Image.open(tmp_path / "out.png") as check:  # a valid PNG for Pillow too
        check.load()
        if channels == 1:
            np.testing.assert_array_equal(np.asarray(check), data[..., 0])
        elif channels == 3:  # Pillow keeps the high byte of 16-bit colour
            np.testing.assert_array_equal(np.asarray(check), (data >> 8).astype(np.uint8))


def test_16bit_gray_tiff_from_pillow(tmp_path: Path) -> None:
    data = noise((23, 41), np.uint16)
    Image.fromarray(data).save(tmp_path / "in.tif")
    image = read_image(tmp_path / "in.tif")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(image.samples[..., 0], data)
    write_image(tmp_path / "out.tif", image.pixels, bit_depth=16)
    with Image.open(tmp_path / "out.tif") as check:
        np.testing.assert_array_equal(np.asarray(check), data)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_tiff_round_trip(tmp_path: Path, channels: int) -> None:
    data = noise((19, 27, channels), np.uint16)
    write_image(tmp_path / "out.tif", data / 65535.0, bit_depth=16, dpi=(300.0, 300.0))
    image = read_image(tmp_path / "out.tif")
    assert image.bit_depth == 16
    if channels == 2:  # stored as RGBA: gray repeated
        data = np.concatenate([np.repeat(data[..., :1], 3, axis=2), data[..., 1:]], axis=2)
    np.testing.assert_array_equal(image.samples, data)
    assert image.dpi is not None and abs(image.dpi[0] - 300.0) < 0.01
    if channels >= 3:
        with Image.open(tmp_path / "out.tif") as check:  # Pillow opens it (8-bit view)
            check.load()
            assert check.size == (27, 19)


def test_cmyk_jpeg_becomes_rgb_and_drops_its_profile(tmp_path: Path) -> None:
    cmyk = Image.fromarray(noise((21, 33, 4)), mode="CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=95, icc_profile=b"fake cmyk profile")
    image = read_image(tmp_path / "cmyk.jpg")
    assert image.channels == 3 and image.bit_depth == 8
    assert image.icc_profile is None
    assert any("CMYK" in note for note in image.notes)
    with Image.open(tmp_path / "cmyk.jpg") as original:
        expected = np.asarray(original.convert("RGB"))
    np.testing.assert_array_equal(image.samples, expected)


def test_palette_png_with_transparency_keeps_alpha(tmp_path: Path) -> None:
    indices = (np.arange(17 * 23).reshape(17, 23) % 4).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    image.save(tmp_path / "p.png", transparency=2)
    decoded = read_image(tmp_path / "p.png")
    assert decoded.channels == 4
    alpha = decoded.samples[..., 3]
    np.testing.assert_array_equal(alpha == 0, indices == 2)
    np.testing.assert_array_equal(
        decoded.samples[indices == 1][:, :3], [[255, 0, 0]] * int((indices == 1).sum())
    )


def test_la_png(tmp_path: Path) -> None:
    data = noise((15, 9, 2))
    Image.fromarray(data, mode="LA").save(tmp_path / "la.png")
    decoded = read_image(tmp_path / "la.png")
    assert decoded.channels == 2 and decoded.has_alpha
    np.testing.assert_array_equal(decoded.samples, data)


def _frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    frames = []
    for index in range(count):
        data = np.zeros((size[1], size[0], 3), np.uint8)
        data[..., index % 3] = 60 + 60 * index
        data[index, :, :] = 255
        frames.append(Image.fromarray(data))
    return frames


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_use_the_first_frame_and_say_so(tmp_path: Path, fmt: str) -> None:
    frames = _frames(3, (13, 11))
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(
        path,
        format=fmt,
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    decoded = read_image(path)
    assert decoded.height == 11 and decoded.width == 13
    assert any("animated (3 frames): first frame only" in note for note in decoded.notes)
    first = np.asarray(frames[0])
    np.testing.assert_allclose(decoded.samples[..., :3].astype(int), first.astype(int), atol=2)


def test_exif_orientation_is_applied_and_normalised(tmp_path: Path) -> None:
    data = noise((7, 12, 3))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010F] = "vdsr-test"  # Make, to check the rest of EXIF survives
        path = tmp_path / f"o{orientation}.png"
        Image.fromarray(data).save(path, exif=exif.tobytes())
        decoded = read_image(path)
        with Image.open(path) as original:
            expected = np.asarray(ImageOps.exif_transpose(original))
        np.testing.assert_array_equal(
            decoded.samples, expected, err_msg=f"orientation {orientation}"
        )
        if orientation != 1:
            assert decoded.exif is not None
            reread = Image.Exif()
            reread.load(decoded.exif)
            assert reread[0x0112] == 1 and reread[0x010F] == "vdsr-test"


@pytest.mark.parametrize("fmt", ["png", "jpg", "tiff", "webp"])
def test_metadata_is_kept(tmp_path: Path, fmt: str) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "vdsr-test"
    source = tmp_path / "in.png"
    Image.fromarray(noise((9, 11, 3))).save(
        source, icc_profile=icc, dpi=(150, 150), exif=exif.tobytes()
    )
    decoded = read_image(source)
    assert decoded.icc_profile == icc and decoded.dpi is not None
    target = tmp_path / f"out.{fmt}"
    write_image(
        target, decoded.pixels, icc_profile=decoded.icc_profile, dpi=decoded.dpi, exif=decoded.exif
    )
    with Image.open(target) as result:
        assert result.info.get("icc_profile") == icc
        assert result.getexif().get(0x010F) == "vdsr-test"
        if fmt != "webp":  # WebP has no resolution field
            assert round(result.info["dpi"][0]) == 150


def test_streamed_png_equals_one_shot(tmp_path: Path) -> None:
    for channels, depth in [(1, 8), (3, 8), (4, 16), (2, 16)]:
        data = noise((53, 47, channels), np.uint16 if depth == 16 else np.uint8)
        path = tmp_path / f"s{channels}{depth}.png"
        with open_image_writer(path, 53, 47, channels, bit_depth=depth) as writer:
            for start in (0, 1, 3, 20, 33):  # uneven bands
                stop = {0: 1, 1: 3, 3: 20, 20: 33, 33: 53}[start]
                writer.write_rows(data[start:stop])
            writer.finish()
            writer.publish()
        np.testing.assert_array_equal(read_image(path).samples, data)


# --- bad input ----------------------------------------------------------------------------


def _expect_read_error(path: Path, fragment: str, **kwargs: int) -> None:
    with pytest.raises(ImageReadError) as caught:
        read_image(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message and fragment in message, message


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    _expect_read_error(tmp_path / "empty.png", "empty file (0 bytes)")


def test_not_an_image_with_an_image_extension(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    _expect_read_error(tmp_path / "notes.jpg", "not a recognised image format")


def test_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(RNG.integers(0, 256, 4096).astype(np.uint8).tobytes())
    _expect_read_error(tmp_path / "noise.png", "not a recognised image format")


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(noise((64, 80, 3))).save(buffer, format="JPEG" if fmt == "jpg" else "PNG")
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _expect_read_error(path, "corrupt or truncated")


def test_corrupt_png_data(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(noise((40, 40, 3))).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[60:200] = bytes(140)  # zero the compressed stream (CRC now wrong too)
    (tmp_path / "bad.png").write_bytes(bytes(data))
    _expect_read_error(tmp_path / "bad.png", "corrupt")


def test_pixel_limit(tmp_path: Path) -> None:
    Image.fromarray(noise((30, 41, 3))).save(tmp_path / "big.png")
    _expect_read_error(tmp_path / "big.png", "exceeds the limit of 1,000", max_pixels=1000)
    assert read_image(tmp_path / "big.png", max_pixels=30 * 41).width == 41


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    )
    (tmp_path / "bomb.png").write_bytes(bomb + png_chunk(b"IEND", b""))
    _expect_read_error(tmp_path / "bomb.png", "10,000,000,000 pixels exceeds the limit")
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        probe_image(tmp_path / "bomb.png")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    _expect_read_error(tmp_path / "nope.png", "no such file")
    (tmp_path / "folder.png").mkdir()
    _expect_read_error(tmp_path / "folder.png", "is a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_real(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.fromarray(noise((5, 5, 3))).save(path)
    path.chmod(0)
    _expect_read_error(path, "permission denied")


def test_unreadable_file_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root chmod 000 does not block reads, so the open() failure is simulated."""
    path = tmp_path / "secret.png"
    Image.fromarray(noise((5, 5, 3))).save(path)
    original = os.open

    def refuse(target: Any, *args: Any, **kwargs: Any) -> int:
        if Path(target) == path:
            raise PermissionError(13, "Permission denied", str(target))
        return original(target, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    _expect_read_error(path, "cannot read (permission denied)")


def test_paths_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    folder = tmp_path / "dossier été" / "子 目录"
    folder.mkdir(parents=True)
    data = noise((11, 13, 3))
    Image.fromarray(data).save(folder / "ça va 图.png")
    decoded = read_image(folder / "ça va 图.png")
    np.testing.assert_array_equal(decoded.samples, data)
    write_image(folder / "sortie ü.png", decoded.pixels)
    np.testing.assert_array_equal(read_image(folder / "sortie ü.png").samples, data)


# --- writing ------------------------------------------------------------------------------


def test_write_never_replaces_without_overwrite_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    write_image(target, np.zeros((3, 5, 3)))
    before = target.read_bytes()
    with pytest.raises(ImageWriteError, match="already exists"):
        write_image(target, np.ones((3, 5, 3)))
    assert target.read_bytes() == before
    write_image(target, np.ones((3, 5, 3)), overwrite=True)
    assert target.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    with open_image_writer(tmp_path / "half.png", 10, 4, 3) as writer:
        writer.write_rows(np.zeros((5, 4, 3), np.uint8))
        with pytest.raises(ImageWriteError, match="5 of 10 rows"):
            writer.finish()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(blocker / "x.png", np.zeros((3, 3, 3)))


def test_jpeg_drops_alpha_and_16bit(tmp_path: Path) -> None:
    pixels = noise((9, 10, 4), np.uint16) / 65535.0
    write_image(tmp_path / "x.jpg", pixels, bit_depth=16)
    with Image.open(tmp_path / "x.jpg") as result:
        assert result.mode == "RGB" and result.size == (10, 9)


def test_quantize_rounds_half_to_even_and_clips() -> None:
    values = np.array([-0.1, 0.5 / 255, 1.5 / 255, 1.2])
    np.testing.assert_array_equal(quantize(values, 8), [0, 0, 2, 255])
    assert quantize(np.array([1.0]), 16).dtype == np.uint16


# --- issue 14: TIFF structure tags, inputs that are not regular files, temporary files ------


def test_tiff_layout_tags_are_not_read_as_exif(tmp_path: Path) -> None:
    """Pillow returns a TIFF's first IFD (ImageWidth, StripOffsets, ...) as its EXIF. Failed
    before: they were carried to the output, where Pillow's TIFF encoder fails on them and a
    JPEG gets a false ImageWidth."""
    exif = Image.Exif()
    exif[271] = "Camera"
    exif[315] = "Someone"
    Image.fromarray(noise((48, 64, 3))).save(tmp_path / "t.tiff", exif=exif)
    decoded = read_image(tmp_path / "t.tiff")
    assert decoded.exif is not None
    kept = Image.Exif()
    kept.load(decoded.exif)
    assert dict(kept) == {271: "Camera", 315: "Someone"}
    for name in ("o.tif", "o.jpg"):
        write_image(tmp_path / name, noise((96, 128, 3)) / 255.0, exif=decoded.exif)
        with Image.open(tmp_path / name) as produced:
            assert produced.size == (128, 96) and produced.getexif()[271] == "Camera"


def test_tiff_writer_drops_layout_tags_from_any_exif(tmp_path: Path) -> None:
    """EXIF of another source with layout tags in it must not break a TIFF output."""
    exif = Image.Exif()
    exif[256] = 10  # ImageWidth of some other image
    exif[271] = "Camera"
    write_image(tmp_path / "o.tif", noise((8, 12, 3)) / 255.0, exif=exif.tobytes())
    with Image.open(tmp_path / "o.tif") as produced:
        assert produced.size == (12, 8) and produced.getexif()[271] == "Camera"


def test_fifo_device_and_socket_are_refused_without_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed before: a FIFO was opened for reading and the read blocked forever."""
    import socket

    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "null.png").symlink_to("/dev/null")
    sock = Path(f"/tmp/vdsr-{os.getpid()}-probe.png")
    sock.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    opened: list[str] = []
    original = os.open

    def recording(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording)
    try:
        _expect_read_error(tmp_path / "pipe.png", "is a FIFO (named pipe), not a regular file")
        _expect_read_error(tmp_path / "null.png", "is a character device, not a regular file")
        _expect_read_error(sock, "is a socket, not a regular file")
        with pytest.raises(ImageReadError, match="is a FIFO"):
            probe_image(tmp_path / "pipe.png")
    finally:
        server.close()
        sock.unlink(missing_ok=True)
    assert opened == []


def test_stale_temporaries_are_those_whose_writer_is_gone(tmp_path: Path) -> None:
    """Failed before: every .part of a target counted as stale, a live job's included."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "a.png"
    live = tmp_path / f".a.png.{os.getppid()}.abcd1234.part"  # our parent: alive
    gone = tmp_path / f".a.png.{dead.pid}.abcd1234.part"
    old_style = tmp_path / ".a.png.zyxw9876.part"
    other = tmp_path / f".b.png.{dead.pid}.abcd1234.part"
    for path in (live, gone, old_style, other):
        path.write_bytes(b"x")
    assert stale_temporaries(target) == sorted([gone, old_style])
    with open_image_writer(target, 2, 2, 3) as writer:  # our own file in progress is not stale
        assert writer.temporary.name.startswith(f".a.png.{os.getpid()}.")
        assert writer.temporary not in stale_temporaries(target)


def big_endian_tiff(samples: np.ndarray) -> bytes:
    """A baseline uncompressed big-endian ("MM") TIFF of uint16 ``(H, W, C)`` samples, C in
    1, 3, 4 (gray, RGB, RGB + unassociated alpha), as a Mac or a scanner may write it."""
    height, width, channels = samples.shape
    pixels = samples.astype(">u2").tobytes()
    entries: list[tuple[int, int, int, int]] = []  # tag, type, count, value or offset
    extra = b""
    header = 8
    count = 10 + (channels == 4)
    ifd_size = 2 + 12 * count + 4
    extra_at = header + ifd_size
    if channels > 1:
        bits: tuple[int, int, int, int] = (258, 3, channels, extra_at)
        extra = struct.pack(f">{channels}H", *([16] * channels))
    else:
        bits = (258, 3, 1, 16 << 16)  # a SHORT value sits left-justified in the 4 bytes
    pixels_at = extra_at + len(extra)
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        bits,
        (259, 3, 1, 1 << 16),
        (262, 3, 1, (1 if channels == 1 else 2) << 16),
        (273, 4, 1, pixels_at),
        (277, 3, 1, channels << 16),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1 << 16),
    ]
    if channels == 4:
        entries.append((338, 3, 1, 2 << 16))
    ifd = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"MM\x00\x2a" + struct.pack(">I", header) + ifd + extra + pixels


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_big_endian_16bit_tiff_reads_exact_and_writes_back(tmp_path: Path, channels: int) -> None:
    """Issue 27 (kind 2): every 16-bit TIFF test used Pillow's or our little-endian files.
    A big-endian file must give the same samples (high and low bytes not swapped)."""
    data = noise((13, 21, channels), np.uint16)
    data[0, 0] = 0x0102  # distinct high and low bytes: a swap would read 0x0201
    (tmp_path / "be.tif").write_bytes(big_endian_tiff(data))
    image = read_image(tmp_path / "be.tif")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(image.samples, data)
    write_image(tmp_path / "out.tif", image.pixels, bit_depth=16)
    np.testing.assert_array_equal(read_image(tmp_path / "out.tif").samples, data)

"""Decoding images: input-kind checks, size limits, modes, alpha, 16-bit colour, EXIF
orientation and TIFF layout tags, ICC and DPI (see the package docstring)."""

from __future__ import annotations

import math
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ImageReadError
from vdsr_deploy.fileops import not_regular_reason

DEFAULT_MAX_PIXELS = 20_000 * 20_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
EXIF_ORIENTATION = 0x0112

Samples = NDArray[Any]  # uint8 or uint16


@dataclass(frozen=True)
class ImageMetadata:
    """What is carried from input to output where the format allows it."""

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says, read without decoding pixels."""

    width: int
    height: int
    mode: str
    frames: int
    format: str

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Upper bound of the decoded samples' size (16-bit RGBA worst case per mode)."""
        channels = {
            "1": 1,
            "L": 1,
            "I;16": 1,
            "I;16B": 1,
            "I;16L": 1,
            "I;16N": 1,
            "I": 1,
            "F": 1,
            "LA": 2,
            "La": 2,
            "RGB": 3,
            "YCbCr": 3,
            "LAB": 3,
            "HSV": 3,
        }.get(self.mode, 4)
        return self.pixels * channels * 2


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``samples`` ``(H, W, C)`` uint8/uint16 as stored in the file."""

    samples: Samples
    bit_depth: int
    source: Path | None = None
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.samples.ndim != 3 or self.samples.shape[2] not in (1, 2, 3, 4):
            raise ImageReadError(f"expected (H, W, 1..4) samples, got shape {self.samples.shape}")
        expected = np.uint16 if self.bit_depth == 16 else np.uint8
        if self.bit_depth not in (8, 16) or self.samples.dtype != expected:
            raise ImageReadError(
                f"expected {expected.__name__} samples for bit depth {self.bit_depth}"
            )

    @property
    def peak(self) -> float:
        return 65535.0 if self.bit_depth == 16 else 255.0

    @property
    def pixels(self) -> NDArray[np.float32]:
        """Float32 ``(H, W, C)`` in ``[0, 1]`` (computed on every access)."""
        result: NDArray[np.float32] = self.samples.astype(np.float32) / np.float32(self.peak)
        return result

    @property
    def metadata(self) -> ImageMetadata:
        return ImageMetadata(self.icc_profile, self.dpi, self.exif)

    @property
    def height(self) -> int:
        return int(self.samples.shape[0])

    @property
    def width(self) -> int:
        return int(self.samples.shape[1])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)


# Pillow's decompression-bomb guard is a process-wide setting; we apply our own limit, so it is
# lifted while a header is parsed, under a lock (decoding threads run concurrently).
_PIL_LIMIT_LOCK = threading.Lock()




def _check_regular(source: Path, mode: int) -> None:
    reason = not_regular_reason(mode)
    if reason is not None:
        raise ImageReadError(f"{source}: {reason}")


def _open_source(source: Path) -> IO[bytes]:
    """The file, opened for reading; one clear sentence for every way that can fail.

    FIFOs, devices and sockets (links to them included) are refused from their ``stat``
    before any open, and the open itself is non-blocking and checked again, so a file that
    turns into a FIFO in between cannot hang the job.
    """
    try:
        _check_regular(source, source.stat().st_mode)
        descriptor = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            _check_regular(source, os.fstat(descriptor).st_mode)
            os.set_blocking(descriptor, True)
            handle = os.fdopen(descriptor, "rb")
        except BaseException:
            os.close(descriptor)
            raise
    except ImageReadError:
        raise
    except FileNotFoundError as error:
        if source.is_symlink():
            raise ImageReadError(f"{source}: broken link (its target does not exist)") from error
        raise ImageReadError(f"{source}: no such file") from error
    except PermissionError as error:
        raise ImageReadError(f"{source}: cannot read (permission denied)") from error
    except OSError as error:
        raise ImageReadError(f"{source}: cannot read ({error.strerror or error})") from error
    try:
        size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        handle.close()
        raise ImageReadError(f"{source}: cannot read ({error.strerror or error})") from error
    if size == 0:
        handle.close()
        raise ImageReadError(f"{source}: empty file (0 bytes)")
    return handle


@contextmanager
def _pil_image(handle: IO[bytes], source: Path) -> Iterator[Any]:
    from PIL import Image, UnidentifiedImageError

    handle.seek(0)
    try:
        with _PIL_LIMIT_LOCK:
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                opened = Image.open(handle)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except UnidentifiedImageError as error:
        raise ImageReadError(f"{source}: not a recognised image format") from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise ImageReadError(f"{source}: corrupt image header ({error})") from error
    with opened:
        yield opened


def _check_size(header: ImageHeader, source: Path, max_pixels: int) -> None:
    if header.width < 1 or header.height < 1:
        raise ImageReadError(f"{source}: image has no pixels ({header.width}x{header.height})")
    if header.pixels > max_pixels:
        raise ImageReadError(
            f"{source}: {header.width}x{header.height} = {header.pixels:,} pixels exceeds the "
            "limit of "
            f"{max_pixels:,} (raise --max-pixels if this image is trusted)"
        )


def _header(opened: Any) -> ImageHeader:
    width, height = opened.size
    return ImageHeader(
        int(width),
        int(height),
        str(opened.mode),
        int(getattr(opened, "n_frames", 1)),
        str(opened.format or "?"),
    )


def probe_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Size, mode and frame count from the header, without decoding pixels.

    Raises the same errors as :func:`read_image` for unreadable, non-image or oversized files.
    """
    source = Path(path)
    with _open_source(source) as handle, _pil_image(handle, source) as opened:
        header = _header(opened)
    _check_size(header, source, max_pixels)
    return header


# Pillow decodes 16-bit colour to 8 bits. Decoding again with the opposite byte order gives
# the low bytes (same unfiltering, the other byte of every sample is kept).
_SWAP_16 = {
    "RGB;16B": "RGB;16L",
    "RGB;16L": "RGB;16B",
    "RGBA;16B": "RGBA;16L",
    "RGBA;16L": "RGBA;16B",
    "RGBX;16B": "RGBX;16L",
    "RGBX;16L": "RGBX;16B",
}


def _rawmode(tile: Any) -> str | None:
    args = tile.args
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile.args
    new_args: Any = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=new_args)


def _decode_16bit_colour(
    handle: IO[bytes], source: Path, rawmode: str, mode: str
) -> Samples | None:
    """uint16 samples of a 16-bit colour PNG/TIFF, or None when the layout is not one we know."""
    if rawmode == "LA;16B":  # 16-bit gray + alpha PNG: Pillow opens it as RGBA; 4 bytes per pixel
        with _pil_image(handle, source) as raw:
            raw.tile = [_with_rawmode(t, "RGBA") for t in raw.tile]
            raw.load()
            data = np.asarray(raw)
        joined: NDArray[np.uint16] = (data[..., 0::2].astype(np.uint16) << 8) | data[..., 1::2]
        return joined
    if rawmode not in _SWAP_16:
        return None
    with _pil_image(handle, source) as high_image:
        high_image.load()
        high = np.asarray(high_image)
    with _pil_image(handle, source) as low_image:
        low_image.tile = [
            _with_rawmode(t, _SWAP_16[_rawmode(t) or rawmode]) for t in low_image.tile
        ]
        low_image.load()
        low = np.asarray(low_image)
    channels = 4 if mode == "RGBA" else 3
    result: NDArray[np.uint16] = (high[..., :channels].astype(np.uint16) << 8) | low[..., :channels]
    return result


def _samples_from_pil(image: Any, source: Path, notes: list[str]) -> tuple[Samples, int]:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)[..., None], 16
    if mode == "I":
        data = np.asarray(image)
        if data.size and (int(data.min()) < 0 or int(data.max()) > 65535):
            notes.append("32-bit integer samples clipped to the 16-bit range")
        return np.clip(data, 0, 65535).astype(np.uint16)[..., None], 16
    if mode == "F":
        notes.append("floating-point samples stored as 16-bit (values clipped to [0, 1])")
        data = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        return np.rint(np.clip(data, 0.0, 1.0) * 65535.0).astype(np.uint16)[..., None], 16
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        has_alpha = "transparency" in image.info or (
            image.palette is not None and image.palette.mode == "RGBA"
        )
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "CMYK":
        notes.append(
            "CMYK converted to RGB without colour management; its CMYK ICC profile is not kept"
        )
        image = image.convert("RGB")
    elif mode in ("YCbCr", "LAB", "HSV", "RGBX"):
        image = image.convert("RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(f"{source}: unsupported image mode {image.mode!r}")
    data = np.asarray(image)
    if data.ndim == 2:
        data = data[..., None]
    return data.astype(np.uint8, copy=False), 8


def _orient(samples: Samples, orientation: int) -> Samples:
    """Apply an EXIF orientation (1..8) so the result displays upright."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    transform = transforms.get(orientation)
    return samples if transform is None else np.ascontiguousarray(transform(samples))


def read_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path`` (first frame of animations), apply EXIF orientation, keep 8/16 bits.

    Raises :class:`ImageReadError` naming the file and the reason for missing, unreadable,
    empty, corrupt, truncated, oversized (``max_pixels``) or non-image files. ``notes`` says
    what was changed on the way (first frame only, CMYK converted, ...).
    """
    source = Path(path)
    notes: list[str] = []
    with _open_source(source) as handle:
        try:
            with _pil_image(handle, source) as opened:
                header = _header(opened)
                _check_size(header, source, max_pixels)
                if header.frames > 1:
                    notes.append(f"animated ({header.frames} frames): first frame only")
                icc = opened.info.get("icc_profile")
                dpi = opened.info.get("dpi")
                rawmode = _rawmode(opened.tile[0]) if opened.tile else None
                samples: Samples | None = None
                bit_depth = 8
                if opened.mode in ("RGB", "RGBA") and rawmode and ";16" in rawmode:
                    samples = _decode_16bit_colour(handle, source, rawmode, opened.mode)
                    if samples is None:
                        notes.append(f"16-bit layout {rawmode} read as 8-bit")
                    else:
                        bit_depth = 16
                if samples is None:
                    opened.load()
                    samples, bit_depth = _samples_from_pil(opened, source, notes)
                exif = opened.getexif()  # after decoding: PNG keeps eXIf after the pixel data
        except ImageReadError:
            raise
        except MemoryError as error:
            raise ImageReadError(f"{source}: not enough memory to decode it") from error
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as error:
            raise ImageReadError(f"{source}: corrupt or truncated image ({error})") from error
    orientation = int(exif.get(EXIF_ORIENTATION, 1) or 1) if exif else 1
    if orientation != 1:
        samples = _orient(samples, orientation)
        notes.append(f"EXIF orientation {orientation} applied (stored as 1)")
        exif[EXIF_ORIENTATION] = 1
    if header.mode in ("CMYK", "LAB"):  # the profile describes the source colour space, not RGB
        icc = None
    if exif and header.format == "TIFF":
        exif = without_layout_tags(exif)
    return DecodedImage(
        samples=np.ascontiguousarray(samples),
        bit_depth=bit_depth,
        source=source,
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
        dpi=_dpi(dpi),
        exif=exif.tobytes() if exif and len(exif) else None,
        notes=tuple(notes),
    )


# Tags that describe how a TIFF stores its pixels (size, samples, strips/tiles, compression,
# colour layout), not the picture. Pillow returns a TIFF's first IFD as its EXIF, so they come
# with it; copied to an output of another size they are false (ImageWidth 64 on a 128-wide
# JPEG), and Pillow's TIFF encoder fails on them ("codec configuration error"). Resolution is
# carried separately as DPI; ICC, XMP and Photoshop data as their own fields or not at all.
TIFF_LAYOUT_TAGS = frozenset(
    {
        254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280,
        281, 282, 283, 284, 290, 291, 292, 293, 296, 297, 317, 318, 319, 320, 321, 322,
        323, 324, 325, 330, 332, 334, 338, 339, 340, 341, 347, 512, 513, 514, 515, 517,
        518, 519, 520, 521, 529, 530, 531, 532, 34377, 34675, 37724,
    }
)  # fmt: skip


def parse_exif(data: bytes) -> Any:
    from PIL import Image

    exif = Image.Exif()
    exif.load(data)
    return exif


def without_layout_tags(exif: Any) -> Any:
    """``exif`` (a ``PIL.Image.Exif``) without :data:`TIFF_LAYOUT_TAGS` (in place)."""
    for tag in TIFF_LAYOUT_TAGS & set(exif):
        del exif[tag]
    return exif


def _dpi(value: object) -> tuple[float, float] | None:
    if isinstance(value, tuple) and len(value) == 2:
        try:
            x, y = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            return None
        if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0:
            return (x, y)
    return None

"""Reading and writing images: modes, alpha, 16-bit, EXIF orientation, atomic writes.

Decoded pixels are float32 in ``[0, 1]``, shape ``(H, W, C)`` with C = 1 (gray), 2 (gray +
alpha), 3 (RGB) or 4 (RGBA); ``bit_depth`` says whether the source was 8- or 16-bit so the
output can keep it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ImageReadError, ImageWriteError

DEFAULT_MAX_PIXELS = 20_000 * 20_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image. ``pixels``: float32 ``(H, W, C)`` in ``[0, 1]``."""

    pixels: NDArray[np.float32]
    bit_depth: int
    source: Path | None = None
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)


def _to_float(image: Any, path: Path) -> tuple[NDArray[np.float32], int]:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0
        return np.clip(array / peak, 0, 1).astype(np.float32)[..., None], 16
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return np.clip(array, 0, 1)[..., None], 16
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        image = image.convert("RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(f"{path}: unsupported image mode {image.mode!r}")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    bit_depth = 16 if array.dtype == np.uint16 else 8
    peak = 65535.0 if bit_depth == 16 else 255.0
    return (array.astype(np.float32) / np.float32(peak)), bit_depth


def read_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path`` (first frame of animations), apply EXIF orientation, return floats.

    Raises :class:`ImageReadError` with the file name and the reason for missing, empty,
    corrupt, truncated, oversized or non-image files.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    source = Path(path)
    try:
        size = source.stat().st_size
    except OSError as error:
        raise ImageReadError(f"{source}: cannot read ({error.strerror or error})") from error
    if not source.is_file():
        raise ImageReadError(f"{source}: not a file")
    if size == 0:
        raise ImageReadError(f"{source}: empty file (0 bytes)")
    notes: list[str] = []
    previous_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(source) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageReadError(
                    f"{source}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                    f"{max_pixels:,} (raise --max-pixels if this image is trusted)"
                )
            if getattr(opened, "n_frames", 1) > 1:
                notes.append(f"animated ({opened.n_frames} frames): first frame only")
            icc = opened.info.get("icc_profile")
            dpi = opened.info.get("dpi")
            opened.load()
            image = ImageOps.exif_transpose(opened)
            exif_bytes: bytes | None = None
            exif = image.getexif()
            if len(exif):
                exif_bytes = exif.tobytes()
            pixels, bit_depth = _to_float(image, source)
    except ImageReadError:
        raise
    except UnidentifiedImageError as error:
        raise ImageReadError(f"{source}: not a recognised image format") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(f"{source}: corrupt or truncated image ({error})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        bit_depth=bit_depth,
        source=source,
        icc_profile=icc if isinstance(icc, bytes) else None,
        dpi=(float(dpi[0]), float(dpi[1])) if isinstance(dpi, tuple) and len(dpi) == 2 else None,
        exif=exif_bytes,
        notes=tuple(notes),
    )


def quantize(pixels: NDArray[np.floating], bit_depth: int) -> NDArray[np.generic]:
    """Float ``[0, 1]`` -> uint8/uint16 with clipping and round-half-to-even."""
    peak = 65535.0 if bit_depth == 16 else 255.0
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * peak), 0, peak).astype(dtype)


def _to_pil(pixels: NDArray[np.floating], bit_depth: int, fmt: str) -> Any:
    from PIL import Image

    channels = pixels.shape[2]
    if bit_depth == 16 and fmt in ("png", "tiff"):
        data = quantize(pixels, 16)
        if channels == 1:
            return Image.fromarray(data[..., 0].astype(np.uint16), mode="I;16")
        if fmt == "png":
            return _Png16(data)
        return _Png16(data)
    data8 = quantize(pixels, 8)
    if channels == 1:
        return Image.fromarray(data8[..., 0], mode="L")
    if channels == 2:
        return Image.fromarray(data8, mode="LA")
    if channels == 3:
        return Image.fromarray(data8, mode="RGB")
    return Image.fromarray(data8, mode="RGBA")


@dataclass(frozen=True)
class _Png16:
    """16-bit colour data that Pillow cannot hold: written with a minimal PNG encoder."""

    data: NDArray[np.generic]


def _write_png16(data: NDArray[np.generic], handle: Any) -> None:
    import struct
    import zlib

    height, width, channels = data.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = np.ascontiguousarray(data.astype(">u2")).reshape(height, width * channels * 2)
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), raw.view(np.uint8)], axis=1)

    def chunk(tag: bytes, payload: bytes) -> bytes:
        body = tag + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    handle.write(b"\x89PNG\r\n\x1a\n")
    handle.write(chunk(b"IHDR", header))
    handle.write(chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    handle.write(chunk(b"IEND", b""))


def output_format(path: Path, fmt: str | None = None) -> str:
    """The format name for ``path`` (``fmt`` wins), e.g. ``png``."""
    if fmt:
        name = fmt.lower()
    else:
        name = path.suffix.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(name, name)
    if name not in ("png", "jpg", "webp", "tiff", "bmp"):
        raise ImageWriteError(f"{path}: cannot write format {name!r} (use png, jpg, webp, tiff or bmp)")
    return name


def write_image(
    path: Path | str,
    pixels: NDArray[np.floating],
    *,
    bit_depth: int = 8,
    fmt: str | None = None,
    overwrite: bool = False,
    quality: int = 95,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
) -> Path:
    """Write float ``(H, W, C)`` pixels in ``[0, 1]`` atomically (temp file + rename).

    16-bit is kept for PNG and TIFF; JPEG/WebP/BMP are 8-bit. Never replaces an existing file
    unless ``overwrite``.
    """
    target = Path(path)
    name = output_format(target, fmt)
    if target.exists() and not overwrite:
        raise ImageWriteError(f"{target}: already exists (use --overwrite to replace it)")
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ImageWriteError(f"{target}: expected (H, W, 1..4) pixels, got shape {pixels.shape}")
    if name in ("jpg", "bmp") and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]
    image = _to_pil(pixels, bit_depth if name in ("png", "tiff") else 8, name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as error:
        raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if isinstance(image, _Png16):
                if name == "png":
                    _write_png16(image.data, handle)
                else:
                    _write_tiff16(image.data, handle)
            else:
                options: dict[str, Any] = {}
                if icc_profile:
                    options["icc_profile"] = icc_profile
                if dpi and name in ("png", "jpg", "tiff"):
                    options["dpi"] = dpi
                if exif and name in ("jpg", "png", "webp", "tiff"):
                    options["exif"] = exif
                if name in ("jpg", "webp"):
                    options["quality"] = quality
                pil_format = {"jpg": "JPEG", "tiff": "TIFF"}.get(name, name.upper())
                image.save(handle, format=pil_format, **options)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        if not overwrite and target.exists():
            raise ImageWriteError(f"{target}: already exists (use --overwrite to replace it)")
        temporary.replace(target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_tiff16(data: NDArray[np.generic], handle: Any) -> None:
    from PIL import Image

    if data.shape[2] == 1:
        Image.fromarray(data[..., 0].astype(np.uint16), mode="I;16").save(handle, format="TIFF")
        return
    # Pillow cannot build 16-bit RGB(A) images from arrays; store the samples via PNG instead
    raise ImageWriteError("16-bit colour TIFF output is not supported; use --format png")

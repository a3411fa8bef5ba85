"""Writing whole images: format choice, channel/depth layout, the Pillow encoder (JPEG,
WebP, BMP, 8-bit TIFF), :func:`open_image_writer` and :func:`write_image`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ImageWriteError
from vdsr_deploy.imageio.atomic import ImageWriter
from vdsr_deploy.imageio.bands import PngWriter, Tiff16Writer
from vdsr_deploy.imageio.read import ImageMetadata, Samples, parse_exif, without_layout_tags

FORMAT_SUFFIX = {
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpg",
    "webp": ".webp",
    "tiff": ".tif",
    "bmp": ".bmp",
}
WRITE_FORMATS = ("png", "jpg", "webp", "tiff", "bmp")


def quantize(pixels: NDArray[np.floating], bit_depth: int) -> Samples:
    """Float ``[0, 1]`` -> uint8/uint16 with clipping and round-half-to-even."""
    peak = 65535.0 if bit_depth == 16 else 255.0
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    result: Samples = np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * peak), 0, peak).astype(
        dtype
    )
    return result


def output_format(path: Path, fmt: str | None = None) -> str:
    """The format name for ``path`` (``fmt`` wins), e.g. ``png``."""
    name = fmt.lower() if fmt else path.suffix.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(name, name)
    if name not in WRITE_FORMATS:
        raise ImageWriteError(
            f"{path}: cannot write format {name!r} (use png, jpg, webp, tiff or bmp)"
        )
    return name


# --- Pillow (JPEG, WebP, BMP, 8-bit TIFF): the whole image at once ------------------------------


class _PillowWriter(ImageWriter):
    """Collects the rows (8-bit) and encodes them with Pillow on :meth:`finish`."""

    def __init__(
        self,
        target: Path,
        height: int,
        width: int,
        channels: int,
        fmt: str,
        *,
        overwrite: bool,
        metadata: ImageMetadata,
        quality: int,
    ) -> None:
        super().__init__(target, height, width, channels, 8, overwrite=overwrite, metadata=metadata)
        self._format = fmt
        self._quality = quality
        self._image = np.empty((height, width, channels), dtype=np.uint8)

    def _write_rows(self, rows: Samples) -> None:
        self._image[self.rows_written : self.rows_written + rows.shape[0]] = rows

    def _finish(self) -> None:
        from PIL import Image

        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.channels]
        data = self._image[..., 0] if self.channels == 1 else self._image
        image = Image.fromarray(data, mode=mode)
        options: dict[str, Any] = {}
        meta = self._metadata
        if meta.icc_profile:
            options["icc_profile"] = meta.icc_profile
        if meta.dpi and self._format in ("jpg", "tiff", "bmp"):
            options["dpi"] = meta.dpi
        if meta.exif and self._format in ("jpg", "webp"):
            options["exif"] = meta.exif
        elif meta.exif and self._format == "tiff":  # Pillow's TIFF encoder fails on layout tags
            exif = without_layout_tags(parse_exif(meta.exif))
            if len(exif):
                options["exif"] = exif.tobytes()
        if self._format in ("jpg", "webp"):
            options["quality"] = self._quality
        pil_format = {"jpg": "JPEG", "tiff": "TIFF", "webp": "WEBP", "bmp": "BMP"}[self._format]
        image.save(self._require_handle(), format=pil_format, **options)
        self._image = np.empty((0, 0, 0), dtype=np.uint8)


@dataclass(frozen=True)
class OutputLayout:
    """How an image with ``channels`` and ``bit_depth`` is stored in a format (what may be lost)."""

    channels: int
    bit_depth: int
    notes: tuple[str, ...]


def output_layout(fmt: str, channels: int, bit_depth: int) -> OutputLayout:
    """Channels and bit depth an output of ``fmt`` gets, and notes on what is dropped."""
    notes: list[str] = []
    out_channels, out_depth = channels, bit_depth
    if fmt in ("jpg", "bmp") and channels in (2, 4):
        out_channels = channels - 1
        notes.append(f"alpha dropped ({fmt} has no alpha channel)")
    if fmt == "webp" and channels in (1, 2):
        out_channels = channels + 2
    if fmt == "tiff" and bit_depth == 16 and channels == 2:
        out_channels = 4  # 16-bit gray + alpha TIFF is not widely readable (Pillow cannot)
        notes.append("16-bit gray + alpha stored as RGBA (TIFF)")
    if bit_depth == 16 and fmt not in ("png", "tiff"):
        out_depth = 8
        notes.append(f"16-bit reduced to 8-bit ({fmt} is 8-bit)")
    return OutputLayout(out_channels, out_depth, tuple(notes))


def adapt_channels(rows: Samples, channels: int) -> Samples:
    """Map ``(n, w, c)`` samples to ``channels`` (see :func:`output_layout`).

    Drops alpha, or turns gray (+ alpha) into RGB(A).
    """
    have = rows.shape[2]
    if have == channels:
        return rows
    if channels == have - 1:  # alpha dropped
        return np.ascontiguousarray(rows[..., :channels])
    if channels == have + 2:  # gray (+ alpha) -> RGB(A)
        gray = np.repeat(rows[..., :1], 3, axis=2)
        return np.ascontiguousarray(
            np.concatenate([gray, rows[..., 1:]], axis=2) if have == 2 else gray
        )
    raise ImageWriteError(f"cannot map {have} channels to {channels}")


def open_image_writer(
    path: Path | str,
    height: int,
    width: int,
    channels: int,
    *,
    bit_depth: int = 8,
    fmt: str | None = None,
    overwrite: bool = False,
    quality: int = 95,
    metadata: ImageMetadata | None = None,
    png_level: int = 6,
) -> ImageWriter:
    """A writer for an ``height`` x ``width`` image with ``channels`` stored at ``bit_depth``.

    ``channels``/``bit_depth`` must already fit the format (see :func:`output_layout`). PNG
    (8/16-bit) and 16-bit TIFF are streamed to disk as rows arrive; other formats collect the
    8-bit image and encode it on :meth:`ImageWriter.finish`.
    """
    target = Path(path)
    name = output_format(target, fmt)
    meta = metadata or ImageMetadata()
    if height < 1 or width < 1 or channels not in (1, 2, 3, 4) or bit_depth not in (8, 16):
        raise ImageWriteError(
            f"{target}: cannot write a {width}x{height} image with {channels} channels at "
            f"{bit_depth} bits"
        )
    layout = output_layout(name, channels, bit_depth)
    if (layout.channels, layout.bit_depth) != (channels, bit_depth):
        raise ImageWriteError(
            f"{target}: {name} cannot store {channels} channels at {bit_depth} bits"
        )
    if not 1 <= quality <= 100:
        raise ImageWriteError(f"quality: expected 1..100, got {quality}")
    if name == "png":
        return PngWriter(
            target,
            height,
            width,
            channels,
            bit_depth,
            overwrite=overwrite,
            metadata=meta,
            level=png_level,
        )
    if name == "tiff" and bit_depth == 16:
        return Tiff16Writer(target, height, width, channels, overwrite=overwrite, metadata=meta)
    return _PillowWriter(
        target, height, width, channels, name, overwrite=overwrite, metadata=meta, quality=quality
    )


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

    16-bit is kept for PNG and TIFF; JPEG/WebP/BMP are 8-bit (alpha is dropped for JPEG and
    BMP). Never replaces an existing file unless ``overwrite``.
    """
    target = Path(path)
    name = output_format(target, fmt)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ImageWriteError(f"{target}: expected (H, W, 1..4) pixels, got shape {pixels.shape}")
    if bit_depth not in (8, 16):
        raise ImageWriteError(f"{target}: expected bit depth 8 or 16, got {bit_depth}")
    layout = output_layout(name, int(pixels.shape[2]), bit_depth)
    samples = adapt_channels(quantize(pixels, layout.bit_depth), layout.channels)
    with open_image_writer(
        target,
        int(pixels.shape[0]),
        int(pixels.shape[1]),
        layout.channels,
        bit_depth=layout.bit_depth,
        fmt=name,
        overwrite=overwrite,
        quality=quality,
        metadata=ImageMetadata(icc_profile, dpi, exif),
    ) as writer:
        writer.write_rows(samples)
        writer.finish()
        return writer.publish()

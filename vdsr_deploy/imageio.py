"""Reading and writing images: modes, alpha, 16-bit, EXIF/ICC/DPI, atomic and streamed writes.

Decoding keeps the file's own samples: :attr:`DecodedImage.samples` is ``uint8`` or ``uint16``
``(H, W, C)`` with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), and
:attr:`DecodedImage.pixels` gives float32 ``[0, 1]`` (``samples / 255`` or ``/ 65535``).
16-bit PNG and TIFF stay 16-bit, colour included (Pillow itself reduces 16-bit colour to
8 bits; we decode the two bytes of every sample separately and join them).

Writing is atomic (a temporary file in the target folder, fsync, rename) and can be
streamed: :func:`open_image_writer` takes rows in order, so PNG and 16-bit TIFF outputs never
need the whole image in memory. JPEG, WebP, BMP and 8-bit TIFF go through Pillow, which needs
the whole (8-bit) image at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import stat
import struct
import tempfile
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ImageReadError, ImageWriteError
from vdsr_deploy.faults import fault_point
from vdsr_deploy.joblock import pid_alive

DEFAULT_MAX_PIXELS = 20_000 * 20_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
FORMAT_SUFFIX = {
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpg",
    "webp": ".webp",
    "tiff": ".tif",
    "bmp": ".bmp",
}
WRITE_FORMATS = ("png", "jpg", "webp", "tiff", "bmp")
TEMP_SUFFIX = ".part"
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


_NOT_REGULAR = (
    (stat.S_ISDIR, "is a folder, not an image file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file; not read"),
    (stat.S_ISCHR, "is a character device, not a regular file; not read"),
    (stat.S_ISBLK, "is a block device, not a regular file; not read"),
    (stat.S_ISSOCK, "is a socket, not a regular file; not read"),
)


def not_regular_reason(mode: int) -> str | None:
    """Why a file of ``st_mode`` ``mode`` is not read as an image (None: a regular file)."""
    for test, reason in _NOT_REGULAR:
        if test(mode):
            return reason
    return None if stat.S_ISREG(mode) else "is not a regular file; not read"


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


def _parse_exif(data: bytes) -> Any:
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


# ---------------------------------------------------------------------------------------------
# Writers


@dataclass(frozen=True)
class FileDigest:
    """Size and SHA-256 of a written file."""

    size: int
    sha256: str


def file_digest(path: Path) -> FileDigest:
    """Size and SHA-256 of ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(size, digest.hexdigest())


def stale_temporaries(target: Path) -> list[Path]:
    """Temporary files of ``target`` left behind by processes that are gone.

    A temporary file is named ``.<name>.<pid>.<random>.part`` after the process writing it;
    one whose process still runs (another job writing the same output) is not stale. Names
    without a PID (older versions) count as stale.
    """
    prefix = f".{target.name}."
    try:
        found = sorted(target.parent.glob(f"{_glob_escape(prefix)}*{TEMP_SUFFIX}"))
    except OSError:
        return []
    stale = []
    for path in found:
        owner = path.name[len(prefix) :].split(".", 1)[0]
        pid = int(owner) if owner.isdigit() else 0
        if pid == os.getpid() and path in _live_temporaries:
            continue
        if pid != os.getpid() and pid_alive(pid):
            continue
        stale.append(path)
    return stale


# Temporary files this process is writing: removed by remove_live_temporaries() when the
# process must exit at once (a second SIGINT/SIGTERM), since no cleanup code runs then.
_live_temporaries: set[Path] = set()
_live_lock = threading.Lock()


def remove_live_temporaries(then: Callable[[], object] | None = None) -> None:
    """Delete every temporary output file this process has open, then call ``then`` (e.g.
    ``os._exit``) while still holding the registry's lock, so no writer can create a new
    temporary file in between."""
    with _live_lock:
        for path in _live_temporaries:
            with contextlib.suppress(OSError):
                path.unlink()
        if then is not None:
            then()


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


class ImageWriter(ABC):
    """Rows in, one atomic output file out.

    Usage: :meth:`write_rows` (in order, ``(n, width, channels)`` samples of ``bit_depth``),
    then :meth:`finish` (data complete and on disk under a temporary name; returns its
    digest), then :meth:`publish` (rename onto the target). :meth:`abort` (or leaving the
    ``with`` block without publishing) removes the temporary file.
    """

    def __init__(
        self,
        target: Path,
        height: int,
        width: int,
        channels: int,
        bit_depth: int,
        *,
        overwrite: bool,
    ) -> None:
        self.target = target
        self.height = height
        self.width = width
        self.channels = channels
        self.bit_depth = bit_depth
        self.overwrite = overwrite
        self.notes: list[str] = []
        self.rows_written = 0
        self._published = False
        self._finished = False
        if target.exists() and not overwrite:
            raise ImageWriteError(f"{target}: already exists (use --overwrite to replace it)")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with _live_lock:
                descriptor, name = tempfile.mkstemp(
                    prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
                )
                _live_temporaries.add(Path(name))
        except OSError as error:
            raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
        self.temporary = Path(name)
        self._handle: IO[bytes] | None = os.fdopen(descriptor, "wb")

    @property
    def dtype(self) -> type[np.unsignedinteger[Any]]:
        return np.uint16 if self.bit_depth == 16 else np.uint8

    def write_rows(self, rows: Samples) -> None:
        """Append ``rows`` ``(n, width, channels)`` below the rows written so far."""
        if self._finished:
            raise ImageWriteError(f"{self.target}: rows written after finish()")
        if (
            rows.ndim != 3
            or rows.shape[1:] != (self.width, self.channels)
            or rows.dtype != self.dtype
        ):
            raise ImageWriteError(
                f"{self.target}: expected rows of shape (n, {self.width}, {self.channels}) "
                f"{np.dtype(self.dtype).name}, got {rows.shape} {rows.dtype}"
            )
        if self.rows_written + rows.shape[0] > self.height:
            raise ImageWriteError(f"{self.target}: more than {self.height} rows written")
        self._guard(self._write_rows, rows)
        self.rows_written += rows.shape[0]
        fault_point("write")

    def finish(self) -> FileDigest:
        """Complete the file under its temporary name, fsync it, return its size and hash."""
        if self.rows_written != self.height:
            raise ImageWriteError(
                f"{self.target}: {self.rows_written} of {self.height} rows written"
            )
        self._guard(self._finish)
        fault_point("finish")
        handle = self._require_handle()

        def close() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.chmod(self.temporary, 0o666 & ~_umask())

        self._guard(close)
        self._handle = None
        self._finished = True
        try:
            return file_digest(self.temporary)
        except OSError as error:  # e.g. removed by someone else meanwhile
            self.abort()
            raise ImageWriteError(
                f"{self.target}: cannot write (its temporary file {self.temporary.name}: "
                f"{error.strerror or error})"
            ) from error

    def publish(self) -> Path:
        """Rename the finished file onto the target (refusing to replace one unless overwrite)."""
        if not self._finished:
            raise ImageWriteError(f"{self.target}: publish() before finish()")
        fault_point("rename")
        try:
            if not self.overwrite and self.target.exists():
                raise ImageWriteError(
                    f"{self.target}: already exists (use --overwrite to replace it)"
                )
            self.temporary.replace(self.target)
            self._forget_temporary()
        except OSError as error:
            self.abort()
            raise ImageWriteError(
                f"{self.target}: cannot write ({error.strerror or error})"
            ) from error
        except BaseException:
            self.abort()
            raise
        self._published = True
        fault_point("renamed")
        return self.target

    def abort(self) -> None:
        """Drop the temporary file (no-op once published)."""
        if self._published:
            return
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        self.temporary.unlink(missing_ok=True)
        self._forget_temporary()

    def _forget_temporary(self) -> None:
        with _live_lock:
            _live_temporaries.discard(self.temporary)

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._published:
            self.abort()

    def _require_handle(self) -> IO[bytes]:
        if self._handle is None:
            raise ImageWriteError(f"{self.target}: writer is closed")
        return self._handle

    def _guard(self, function: Any, *args: Any) -> None:
        try:
            function(*args)
        except ImageWriteError:
            self.abort()
            raise
        except OSError as error:
            self.abort()
            raise ImageWriteError(
                f"{self.target}: cannot write ({error.strerror or error})"
            ) from error
        except BaseException:
            self.abort()
            raise

    @abstractmethod
    def _write_rows(self, rows: Samples) -> None: ...

    @abstractmethod
    def _finish(self) -> None: ...


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# --- PNG, streamed ---------------------------------------------------------------------------


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    body = tag + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _png_filter(raw: NDArray[np.uint8], prior: NDArray[np.uint8], bpp: int) -> NDArray[np.uint8]:
    """Filtered scanlines (with their filter byte) for ``raw`` (n, stride), choosing per row
    the filter with the smallest sum of absolute signed bytes (the libpng heuristic)."""
    rows, stride = raw.shape
    a = np.zeros_like(raw, dtype=np.int16)
    a[:, bpp:] = raw[:, :-bpp]
    b = np.empty_like(raw, dtype=np.int16)
    b[0] = prior
    b[1:] = raw[:-1]
    c = np.zeros_like(raw, dtype=np.int16)
    c[:, bpp:] = b[:, :-bpp]
    x = raw.astype(np.int16)
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]).astype(np.uint8)
    signed = candidates.view(np.int8).astype(np.int16)
    scores = np.abs(signed).sum(axis=2, dtype=np.int64)
    choice = np.argmin(scores, axis=0)
    out = np.empty((rows, stride + 1), dtype=np.uint8)
    out[:, 0] = choice
    out[:, 1:] = candidates[choice, np.arange(rows)]
    return out


class _PngWriter(ImageWriter):
    """PNG (8/16-bit, gray, gray+alpha, RGB, RGBA) written row band by row band."""

    def __init__(
        self,
        target: Path,
        height: int,
        width: int,
        channels: int,
        bit_depth: int,
        *,
        overwrite: bool,
        metadata: ImageMetadata,
        level: int = 6,
    ) -> None:
        super().__init__(target, height, width, channels, bit_depth, overwrite=overwrite)
        self._compressor = zlib.compressobj(level)
        self._bpp = channels * (2 if bit_depth == 16 else 1)
        self._prior = np.zeros(width * self._bpp, dtype=np.uint8)
        self._pending: list[bytes] = []
        self._pending_size = 0
        color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
        parts = [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(
                b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
            ),
        ]
        if metadata.icc_profile:
            parts.append(
                _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(metadata.icc_profile))
            )
        if metadata.dpi:
            per_metre = [max(1, round(d / 0.0254)) for d in metadata.dpi]
            parts.append(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
        if metadata.exif:
            exif = metadata.exif[6:] if metadata.exif.startswith(b"Exif\x00\x00") else metadata.exif
            parts.append(_png_chunk(b"eXIf", exif))
        self._guard(self._require_handle().write, b"".join(parts))

    def _write_rows(self, rows: Samples) -> None:
        count = rows.shape[0]
        if count == 0:
            return
        data = rows.astype(">u2") if self.bit_depth == 16 else rows
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(count, -1)
        step = max(1, (4 << 20) // raw.shape[1])  # bounds the filter's temporaries
        for start in range(0, count, step):
            part = raw[start : start + step]
            filtered = _png_filter(part, self._prior, self._bpp)
            self._prior = part[-1].copy()
            self._emit(self._compressor.compress(filtered.tobytes()))

    def _emit(self, data: bytes, *, final: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._pending_size += len(data)
        if self._pending_size >= (1 << 20) or (final and self._pending_size):
            self._require_handle().write(_png_chunk(b"IDAT", b"".join(self._pending)))
            self._pending = []
            self._pending_size = 0

    def _finish(self) -> None:
        self._emit(self._compressor.flush(), final=True)
        self._require_handle().write(_png_chunk(b"IEND", b""))


# --- TIFF, 16-bit, streamed ------------------------------------------------------------------


class _Tiff16Writer(ImageWriter):
    """Baseline uncompressed little-endian TIFF with 16-bit samples (Pillow cannot write
    16-bit colour). Keeps ICC and DPI; EXIF is not written."""

    ROWS_PER_STRIP = 16

    def __init__(
        self,
        target: Path,
        height: int,
        width: int,
        channels: int,
        *,
        overwrite: bool,
        metadata: ImageMetadata,
    ) -> None:
        super().__init__(target, height, width, channels, 16, overwrite=overwrite)
        self._metadata = metadata
        self._offsets: list[int] = []
        self._counts: list[int] = []
        self._buffer: list[bytes] = []
        self._buffered_rows = 0
        self._position = 8
        if metadata.exif:
            self.notes.append("EXIF not kept (16-bit TIFF output)")
        self._guard(self._require_handle().write, b"II*\x00\x00\x00\x00\x00")

    def _write_rows(self, rows: Samples) -> None:
        data = np.ascontiguousarray(rows.astype("<u2"))
        for row in data:
            self._buffer.append(row.tobytes())
            self._buffered_rows += 1
            if self._buffered_rows == self.ROWS_PER_STRIP:
                self._flush_strip()

    def _flush_strip(self) -> None:
        if not self._buffered_rows:
            return
        strip = b"".join(self._buffer)
        self._require_handle().write(strip)
        self._offsets.append(self._position)
        self._counts.append(len(strip))
        self._position += len(strip)
        self._buffer = []
        self._buffered_rows = 0

    def _finish(self) -> None:
        self._flush_strip()
        handle = self._require_handle()
        if self._position % 2:
            handle.write(b"\x00")
            self._position += 1
        entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, value bytes
        short, long_, rational, undefined = 3, 4, 5, 7

        def add(tag: int, kind: int, values: list[int] | bytes) -> None:
            if kind == undefined:
                assert isinstance(values, bytes)
                entries.append((tag, kind, len(values), values))
                return
            assert isinstance(values, list)
            fmt = {short: "<H", long_: "<I", rational: "<II"}[kind]
            count = len(values) // 2 if kind == rational else len(values)
            if kind == rational:
                payload = b"".join(
                    struct.pack(fmt, values[i], values[i + 1]) for i in range(0, len(values), 2)
                )
            else:
                payload = b"".join(struct.pack(fmt, v) for v in values)
            entries.append((tag, kind, count, payload))

        add(256, long_, [self.width])
        add(257, long_, [self.height])
        add(258, short, [16] * self.channels)
        add(259, short, [1])
        add(262, short, [2 if self.channels >= 3 else 1])
        add(273, long_, self._offsets)
        add(277, short, [self.channels])
        add(278, long_, [self.ROWS_PER_STRIP])
        add(279, long_, self._counts)
        if self._metadata.dpi:
            add(282, rational, [round(self._metadata.dpi[0] * 100), 100])
            add(283, rational, [round(self._metadata.dpi[1] * 100), 100])
        add(284, short, [1])
        if self._metadata.dpi:
            add(296, short, [2])
        if self.channels in (2, 4):
            add(338, short, [2])
        add(339, short, [1] * self.channels)
        if self._metadata.icc_profile:
            add(34675, undefined, self._metadata.icc_profile)
        entries.sort()
        ifd_offset = self._position
        data_offset = ifd_offset + 2 + 12 * len(entries) + 4
        ifd = [struct.pack("<H", len(entries))]
        extra: list[bytes] = []
        for tag, kind, count, payload in entries:
            if len(payload) <= 4:
                ifd.append(struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\x00"))
            else:
                ifd.append(struct.pack("<HHII", tag, kind, count, data_offset))
                padded = payload + (b"\x00" if len(payload) % 2 else b"")
                extra.append(padded)
                data_offset += len(padded)
        ifd.append(b"\x00\x00\x00\x00")
        handle.write(b"".join(ifd) + b"".join(extra))
        handle.seek(4)
        handle.write(struct.pack("<I", ifd_offset))


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
        super().__init__(target, height, width, channels, 8, overwrite=overwrite)
        self._format = fmt
        self._metadata = metadata
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
            exif = without_layout_tags(_parse_exif(meta.exif))
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
        return _PngWriter(
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
        return _Tiff16Writer(target, height, width, channels, overwrite=overwrite, metadata=meta)
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

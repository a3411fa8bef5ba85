"""Band encoders: PNG (8/16-bit) and 16-bit TIFF written row band by row band, so an output
never needs the whole image in memory."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.imageio.atomic import ImageWriter
from vdsr_deploy.imageio.read import ImageMetadata, Samples


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


class PngWriter(ImageWriter):
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
        super().__init__(
            target, height, width, channels, bit_depth, overwrite=overwrite, metadata=metadata
        )
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


class Tiff16Writer(ImageWriter):
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
        super().__init__(target, height, width, channels, 16, overwrite=overwrite, metadata=metadata)
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

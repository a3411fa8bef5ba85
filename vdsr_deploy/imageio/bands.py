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


_FILTER_BLOCK_BYTES = 1 << 20  # rows filtered together: bounds the temporaries (~13x this)


def _png_filter(raw: NDArray[np.uint8], prior: NDArray[np.uint8], bpp: int) -> NDArray[np.uint8]:
    """Filtered scanlines for ``raw`` (rows, stride): returns (rows, stride + 1) uint8, each
    row its filter type byte followed by the filtered bytes.

    ``prior`` (stride,) is the scanline just above ``raw[0]`` (zeros for an image's first
    row) and ``bpp`` the bytes per complete pixel (1, 2, 3, 4, 6 or 8). Per row the filter
    (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) with the smallest sum of absolute signed bytes
    wins (the libpng heuristic; byte 0x80 counts 128, ties go to the lower type). All
    arithmetic is uint8 wrapping (exactly the PNG spec's modulo 256) except Paeth's predictor
    comparison; the rows are processed in blocks of about ``_FILTER_BLOCK_BYTES`` so the
    temporaries stay bounded whatever the caller passes.
    """
    rows, stride = raw.shape
    out = np.empty((rows, stride + 1), dtype=np.uint8)
    step = max(1, _FILTER_BLOCK_BYTES // max(stride, 1))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        above = prior if start == 0 else raw[start - 1]
        _png_filter_block(raw[start:stop], above, bpp, out[start:stop])
    return out


def _png_filter_block(
    raw: NDArray[np.uint8], prior: NDArray[np.uint8], bpp: int, out: NDArray[np.uint8]
) -> None:
    """``_png_filter`` for one block of rows, written into ``out`` (rows, stride + 1)."""
    stride = raw.shape[1]
    up = np.empty_like(raw)
    up[0] = prior
    up[1:] = raw[:-1]
    candidate = np.empty_like(raw)
    scratch = np.empty_like(raw)
    out[:, 0] = 0
    out[:, 1:] = raw
    best = _png_score(raw, scratch)
    # x is a byte, a the byte bpp to its left, b the byte above, c the byte above a; the first
    # bpp bytes of a row have a = c = 0 ("head"), handled apart so a, b, c stay views.
    x, a = raw[:, bpp:], raw[:, :-bpp]
    b, c = up[:, bpp:], up[:, :-bpp]
    head = min(bpp, stride)
    cand_head, cand_tail = candidate[:, :head], candidate[:, bpp:]
    # Sub: x - a
    cand_head[...] = raw[:, :head]
    np.subtract(x, a, out=cand_tail)
    _png_keep_better(candidate, 1, best, out, scratch)
    # Up: x - b
    np.subtract(raw, up, out=candidate)
    _png_keep_better(candidate, 2, best, out, scratch)
    # Average: x - floor((a + b) / 2), with floor((a + b) / 2) = (a & b) + ((a ^ b) >> 1)
    np.right_shift(up[:, :head], 1, out=cand_head)
    np.subtract(raw[:, :head], cand_head, out=cand_head)
    np.bitwise_xor(a, b, out=cand_tail)
    np.right_shift(cand_tail, 1, out=cand_tail)
    np.add(cand_tail, np.bitwise_and(a, b), out=cand_tail)
    np.subtract(x, cand_tail, out=cand_tail)
    _png_keep_better(candidate, 3, best, out, scratch)
    # Paeth: x - predictor; with a = c = 0 the predictor is b (pb = 0 <= pa, and pa <= pb
    # only where b = 0 = a), so the head is Up's.
    np.subtract(raw[:, :head], up[:, :head], out=cand_head)
    if stride > bpp:
        pb = np.subtract(a, c, dtype=np.int16)  # p - b with p = a + b - c
        pa = np.subtract(b, c, dtype=np.int16)  # p - a
        pc = np.add(pa, pb)  # p - c
        np.abs(pa, out=pa)
        np.abs(pb, out=pb)
        np.abs(pc, out=pc)
        use_a = np.less_equal(pa, pb)
        use_a &= np.less_equal(pa, pc)
        predictor = _png_select(use_a, a, _png_select(np.less_equal(pb, pc), b, c))
        np.subtract(x, predictor, out=cand_tail)
    _png_keep_better(candidate, 4, best, out, scratch)


def _png_score(candidate: NDArray[np.uint8], scratch: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Per row, the sum of |byte as int8| with 0x80 counting 128 (int8 abs wraps -128 to
    0x80, which read back as uint8 is 128)."""
    np.abs(candidate.view(np.int8), out=scratch.view(np.int8))
    total = np.uint32 if candidate.shape[1] < (1 << 24) else np.uint64  # no overflow
    return np.asarray(scratch.sum(axis=1, dtype=total), dtype=np.uint64)


def _png_keep_better(
    candidate: NDArray[np.uint8],
    kind: int,
    best: NDArray[np.uint64],
    out: NDArray[np.uint8],
    scratch: NDArray[np.uint8],
) -> None:
    """Rows where ``candidate`` scores strictly below ``best`` take it (ties keep the earlier,
    lower filter type, like argmin); ``best`` is updated in place."""
    score = _png_score(candidate, scratch)
    better = score < best
    if better.any():
        out[better, 0] = kind
        out[better, 1:] = candidate[better]
        np.minimum(best, score, out=best)


def _png_select(
    mask: NDArray[np.bool_], if_true: NDArray[np.uint8], if_false: NDArray[np.uint8]
) -> NDArray[np.uint8]:
    """``np.where(mask, if_true, if_false)`` for uint8, branch-free: np.where and masked
    copies are many times slower on the data-dependent masks of real images."""
    ones = np.negative(mask.view(np.uint8))  # True -> 0xFF, False -> 0x00
    picked = np.bitwise_xor(if_true, if_false)
    np.bitwise_and(picked, ones, out=picked)
    np.bitwise_xor(picked, if_false, out=picked)
    return picked


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

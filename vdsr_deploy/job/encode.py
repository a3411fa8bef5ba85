"""Stage 4, encoding: :func:`open_task` opens an image's output writer; an :class:`Encoder`
turns each upscaled band into output rows (colour recombined, quantized), writes the bands
of an image in order, and completes the file: resume record, then atomic rename."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray

from vdsr_deploy.errors import ImageWriteError, VdsrError
from vdsr_deploy.imageio import (
    DecodedImage,
    adapt_channels,
    open_image_writer,
    output_format,
    output_layout,
    quantize,
    stale_temporaries,
)
from vdsr_deploy.job.budget import MemoryBudget
from vdsr_deploy.job.config import JobConfig, WorkItem
from vdsr_deploy.job.halt import Halt
from vdsr_deploy.job.manifest import Manifest
from vdsr_deploy.job.report import Recorder, describe_error
from vdsr_deploy.job.task import F32, HostBand, Task, fail_task
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.device_pipeline import Band as DeviceBand
from vdsr_deploy.planes.tiling import plan_axis


def open_task(
    item: WorkItem, replace: bool, image: DecodedImage, config: JobConfig, recorder: Recorder
) -> Task | None:
    """The output of ``item`` opened for row-by-row writing (stale temporary files of an
    earlier job removed), with the notes on the way recorded; None when it cannot be
    opened (recorded as the item's failure)."""
    out_shape = colour.output_shape(image.height, image.width, config.pipeline.scale)
    fmt = output_format(item.target, config.fmt)
    layout = output_layout(fmt, image.channels, image.bit_depth)
    for message in (item.note, *image.notes, *layout.notes):
        if message:
            recorder.note(item.source, message)
    for stale in stale_temporaries(item.target):
        stale.unlink(missing_ok=True)
    try:
        writer = open_image_writer(
            item.target,
            out_shape[0],
            out_shape[1],
            layout.channels,
            bit_depth=layout.bit_depth,
            fmt=fmt,
            overwrite=replace or config.overwrite,
            quality=config.quality,
            metadata=image.metadata,
        )
    except VdsrError as error:
        recorder.fail(item.source, str(error))
        return None
    for message in writer.notes:
        recorder.note(item.source, message)
    spans = plan_axis(out_shape[0], config.pipeline.tiling.tile, config.pipeline.tiling.halo)
    return Task(item, replace, layout, layout.bit_depth, out_shape, spans, writer)


def finish_rows(band: HostBand, y: F32, chunk_bytes: int) -> list[NDArray[Any]]:
    """``band``'s output rows from the network's output ``y`` (window rows): colour
    recombined, quantized and laid out for the writer, in pieces of about ``chunk_bytes``."""
    y_in = band.y[band.core]
    y_out = y[band.core]
    rows, width = y_in.shape
    channels = 1 + (2 if band.chroma is not None else 0) + (1 if band.alpha is not None else 0)
    step = max(2, chunk_bytes // max(1, width * channels * 8 * 4))
    pieces: list[NDArray[Any]] = []
    for start in range(0, rows, step):
        part = slice(start, start + step)
        prepared = colour.PreparedImage(
            y_in[part],
            None if band.chroma is None else band.chroma[part],
            None if band.alpha is None else band.alpha[part],
        )
        pixels = colour.finish(prepared, y_out[part])
        pieces.append(
            adapt_channels(quantize(pixels, band.task.bit_depth), band.task.layout.channels)
        )
    return pieces


@dataclass(frozen=True, kw_only=True)
class Encoder:
    """Writes finished bands into their outputs. Every band's bytes go back to ``budget``
    once written or dropped; a file's problem fails that file only; once the job is halted
    bands are dropped and files in progress stay unfinished. Outputs are recorded in
    ``manifest`` under ``settings`` before they are renamed into place."""

    manifest: Manifest
    settings: str
    budget: MemoryBudget
    chunk_bytes: int
    recorder: Recorder
    halt: Halt

    def save(self, band: HostBand, y: F32) -> None:
        """Write a host band, given the network's output for its window."""
        task = band.task
        try:
            if task.failed or self.halt.halted():
                return
            rows = finish_rows(band, y, self.chunk_bytes)
            self.recorder.emit(
                {
                    "event": "band",
                    "file": str(task.item.source),
                    "band": band.index + 1,
                    "bands": len(task.spans),
                }
            )
            self._write_in_order(task, band.index, rows)
        except VdsrError as error:
            fail_task(task, str(error), self.recorder)
        except MemoryError:
            fail_task(task, "not enough memory to encode it (lower --memory-mb or --jobs)", self.recorder)
        except Exception as error:  # an encoder bug must not stop the batch
            fail_task(task, f"cannot write ({describe_error(error)})", self.recorder)
        finally:
            self.budget.release(band.reserved)

    def save_device(self, task: Task, band: DeviceBand, reserved: int) -> None:
        """Write a band the device path finished (its final samples, downloaded)."""
        try:
            rows = adapt_channels(band.pixels.result(), task.layout.channels)
            if not (task.failed or self.halt.halted()):
                self._write_in_order(task, band.index, [rows])
        except VdsrError as error:
            fail_task(task, str(error), self.recorder)
        except Exception as error:  # an encoder bug must not stop the batch
            fail_task(task, f"cannot write ({describe_error(error)})", self.recorder)
        finally:
            self.budget.release(reserved)

    def _write_in_order(self, task: Task, index: int, rows: list[NDArray[Any]]) -> None:
        with task.lock:
            if task.failed:
                return
            task.waiting[index] = rows
            while task.next_band in task.waiting:
                for piece in task.waiting.pop(task.next_band):
                    task.writer.write_rows(piece)
                task.next_band += 1
            complete = task.next_band == len(task.spans)
            if not complete or self.halt.halted():  # a stopped job drops images in progress
                return
            self._complete(task)
        self.recorder.done(task.item, task.megapixels)

    def _complete(self, task: Task) -> None:
        """Finish the file, record it for resume, then rename it into place."""
        digest = task.writer.finish()
        settled = self.manifest.settle(task.item.target, digest)
        self.manifest.record(task.item.target, digest, task.item.source, self.settings)
        if settled.publish:
            try:
                task.writer.publish()
            except ImageWriteError:
                self.manifest.retract(task.item.target)  # recorded only what this job published
                raise
        else:
            task.writer.abort()  # the identical file in place is kept (its mtime too)
        if settled.note:
            self.recorder.note(task.item.source, settled.note)
        task.finished = True

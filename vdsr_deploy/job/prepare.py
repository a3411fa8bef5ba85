"""Stage 2, preparing: a :class:`Preparer` opens each decoded image's output and cuts the
image into row bands, one per row of tiles (:func:`vdsr_deploy.planes.tiling.plan_axis`). On the
host a band is its bicubic Y/CbCr/alpha planes (:class:`vdsr_deploy.planes.colour.RowPreparer`:
exactly the rows of the whole-image planes, computed in bounded chunks), queued for the
runner; on the device path (:class:`DevicePath`) bands are upscaled and finished on the
runner's device and go straight to the encoder. Bands hold bytes of the band budget."""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vdsr_deploy.errors import VdsrError
from vdsr_deploy.imageio import DecodedImage
from vdsr_deploy.job.budget import JobMemory, band_row_bytes
from vdsr_deploy.job.config import JobConfig
from vdsr_deploy.job.decode import Decoded, decoded_image
from vdsr_deploy.job.encode import Encoder, open_task
from vdsr_deploy.job.halt import END, Halt, Stopped
from vdsr_deploy.job.report import Recorder, failure_reason
from vdsr_deploy.job.task import F32, BandsInFlight, HostBand, Task, fail_task
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.device_pipeline import DeviceUpscaler, use_device_path
from vdsr_deploy.planes.tiling import Span
from vdsr_deploy.runner import Runner


@dataclass
class DevicePath:
    """The device path's upscaler and its writer threads (None: the host path runs)."""

    upscaler: DeviceUpscaler
    writes: ThreadPoolExecutor

    @staticmethod
    def select(runner: Runner, config: JobConfig, wanted: bool | None) -> DevicePath | None:
        """``wanted`` None: the device path when the runner computes on a CUDA device (on the
        CPU the host path is faster, measured in benchmarks/pipeline_overhead.py)."""
        use = use_device_path(runner) if wanted is None else wanted
        if not use or config.pipeline.ensemble:  # the x8 ensemble wraps the host plane pipeline
            return None
        writes = ThreadPoolExecutor(config.save_threads, thread_name_prefix="vdsr-device-save")
        return DevicePath(DeviceUpscaler(runner, config.pipeline), writes)


@dataclass(frozen=True, kw_only=True)
class Preparer:
    """Turns decoded images into bands. Host bands are registered in ``bands`` and their
    ``(key, y)`` put on ``ready`` for the runner; every opened output is appended to
    ``opened`` (the job aborts those left unfinished)."""

    config: JobConfig
    memory: JobMemory
    bands: BandsInFlight
    ready: queue.Queue[object]
    opened: list[Task]
    encoder: Encoder
    device: DevicePath | None
    recorder: Recorder
    halt: Halt

    def prepare_all(self, decoded: queue.Queue[object]) -> None:
        """Prepare every :class:`Decoded` of ``decoded`` until :data:`END`, giving back its
        input budget, then put :data:`END` on ``ready``. The body of a thread."""
        index = 0
        try:
            while True:
                entry = self.halt.get(decoded)
                if entry is None or entry is END:
                    break
                assert isinstance(entry, Decoded)
                try:
                    self.prepare(index, entry)
                finally:
                    self.memory.inputs.release(entry.reserved)
                index += 1
        except BaseException as error:
            self.halt.crash(error)
        finally:
            if self.device is not None:
                self.device.writes.shutdown(wait=True)
            self.halt.put(self.ready, END)

    def prepare(self, index: int, entry: Decoded) -> None:
        """Open the output of the ``index``-th image and cut it into bands; a problem with
        this image fails it alone."""
        image = decoded_image(entry, self.recorder)
        if image is None:
            return
        item = entry.item
        task = open_task(item, entry.replace, image, self.config, self.recorder)
        if task is None:
            return
        self.opened.append(task)
        self.recorder.emit(
            {
                "event": "begin",
                "file": str(item.source),
                "target": str(item.target),
                "bands": len(task.spans),
                "megapixels": task.megapixels,
            }
        )
        try:
            if self.device is not None:
                self._device_bands(self.device, task, image)
            else:
                self._host_bands(index, task, image)
        except Stopped:
            return  # the job is stopping: the image is dropped (its writer aborted at the end)
        except MemoryError:
            fail_task(task, "not enough memory for its bands (lower --memory-mb or --tile)", self.recorder)
        except VdsrError as error:
            fail_task(task, failure_reason(error, item.source), self.recorder)

    def _device_bands(self, device: DevicePath, task: Task, image: DecodedImage) -> None:
        """The device path (:mod:`vdsr_deploy.planes.device_pipeline`): bands computed on the runner's
        device, downloaded as final samples and written by the device path's writers."""
        held: list[int] = []
        budget = self.memory.bands

        def wait(nbytes: int) -> None:
            held.append(nbytes if budget.acquire(nbytes, self.halt.halted) else 0)

        device.upscaler.on_note = lambda message: self.recorder.note(task.item.source, message)
        for band in device.upscaler.bands(image.samples, bit_depth=task.bit_depth, wait=wait):
            reserved = held.pop()
            if self.halt.halted() or task.failed:
                budget.release(reserved)
                return
            device.writes.submit(self.encoder.save_device, task, band, reserved)

    def _host_bands(self, index: int, task: Task, image: DecodedImage) -> None:
        preparer = colour.RowPreparer(
            image.samples,
            self.config.pipeline.scale,
            peak=image.peak,
            chunk_bytes=self.memory.chunk_bytes,
        )
        per_row = band_row_bytes(
            task.out_shape[1],
            colour=image.channels >= 3,
            alpha=image.has_alpha,
            channels=task.layout.channels,
            bit_depth=task.bit_depth,
        )
        budget = self.memory.bands
        previous: tuple[int, colour.PreparedImage] | None = None
        for band_index, span in enumerate(task.spans):
            if self.halt.halted() or task.failed:
                return
            reserved = span.length * per_row
            if not budget.acquire(reserved, self.halt.halted):
                return
            try:
                window = prepared_window(preparer, span, previous)
            except BaseException:
                budget.release(reserved)
                raise
            previous = (span.start, window)
            core = slice(span.core_start - span.start, span.core_stop - span.start)
            band = HostBand(
                task,
                band_index,
                window.y,
                None if window.chroma is None else window.chroma[core],
                None if window.alpha is None else window.alpha[core],
                core,
                reserved,
            )
            key = (index, band_index)
            self.bands.add(key, band)
            if not self.halt.put(self.ready, (key, window.y)):
                self.bands.drop(key)
                return


def prepared_window(
    preparer: colour.RowPreparer, span: Span, previous: tuple[int, colour.PreparedImage] | None
) -> colour.PreparedImage:
    """The prepared rows of ``span``'s window, reusing rows shared with the ``previous``
    window (its first row, its rows)."""
    if previous is None:
        return preparer.rows(span.start, span.stop)
    start, old = previous
    old_stop = start + old.y.shape[0]
    if not start <= span.start < old_stop:
        return preparer.rows(span.start, span.stop)
    keep = slice(span.start - start, None)
    fresh = None if old_stop >= span.stop else preparer.rows(old_stop, span.stop)

    def join(a: F32 | None, b: F32 | None) -> F32 | None:
        if a is None:
            return None
        return np.ascontiguousarray(a[keep]) if b is None else np.concatenate([a[keep], b])

    y = join(old.y, None if fresh is None else fresh.y)
    assert y is not None
    return colour.PreparedImage(
        y,
        join(old.chroma, None if fresh is None else fresh.chroma),
        join(old.alpha, None if fresh is None else fresh.alpha),
    )

"""Stage 1, decoding: :func:`feed` reads each file's header, holds its decoded size of the
input budget and hands the file to a decode worker; :func:`decoded_image` turns a worker's
result into the image, or into a failure with the reason, so one bad file never stops the job."""

from __future__ import annotations

import queue
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from vdsr_deploy.errors import VdsrError
from vdsr_deploy.imageio import DecodedImage, probe_image, read_image
from vdsr_deploy.job.budget import MemoryBudget
from vdsr_deploy.job.config import WorkItem
from vdsr_deploy.job.halt import END, Halt
from vdsr_deploy.job.report import Recorder, describe_error, failure_reason


@dataclass
class Decoded:
    """A file on its way to the preparer: its decoding (or the error its header gave) and
    the bytes it holds of the input budget."""

    item: WorkItem
    replace: bool
    reserved: int
    result: Future[DecodedImage] | VdsrError


def feed(
    todo: list[tuple[WorkItem, bool]],
    decoders: ThreadPoolExecutor,
    decoded: queue.Queue[object],
    *,
    budget: MemoryBudget,
    max_pixels: int,
    halt: Halt,
) -> None:
    """Put a :class:`Decoded` on ``decoded`` for each item of ``todo`` (item, whether it may
    replace an existing output), in order, then :data:`END`. The body of a thread."""
    try:
        for item, replace in todo:
            if halt.halted():
                break
            try:
                header = probe_image(item.source, max_pixels=max_pixels)
            except VdsrError as error:
                if not halt.put(decoded, Decoded(item, replace, 0, error)):
                    break
                continue
            reserved = header.decoded_bytes
            if not budget.acquire(reserved, halt.halted):
                break
            future = decoders.submit(read_image, item.source, max_pixels=max_pixels)
            if not halt.put(decoded, Decoded(item, replace, reserved, future)):
                future.cancel()
                budget.release(reserved)
                break
    except BaseException as error:  # a bug: end the job with it rather than hang
        halt.crash(error)
    finally:
        halt.put(decoded, END)  # when halted, the preparer stops on its own


def decoded_image(entry: Decoded, recorder: Recorder) -> DecodedImage | None:
    """``entry``'s image, waiting for its decoding; None when it failed (recorded)."""
    source = entry.item.source
    if isinstance(entry.result, VdsrError):
        recorder.fail(source, failure_reason(entry.result, source))
        return None
    try:
        return entry.result.result()
    except VdsrError as error:
        recorder.fail(source, failure_reason(error, source))
    except MemoryError:
        recorder.fail(source, "not enough memory to decode it (lower --jobs or --memory-mb)")
    except Exception as error:  # a decoder bug must not stop the batch
        recorder.fail(source, f"cannot decode ({describe_error(error)})")
    return None

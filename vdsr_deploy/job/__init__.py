"""Upscaling a job of files: inputs -> output paths -> decode | prepare | infer | encode.

(A *job* is many files; a *batch* is the tiles of one runner call, :mod:`vdsr_deploy.planes.pipeline`.)
Stages run concurrently and talk through bounded queues, so memory stays flat for any
number of files and the runner is fed while files are decoded and encoded:

- *plan* (:mod:`~vdsr_deploy.job.plan`, before any pixel is read): every input gets its
  output path, and the resume manifest decides what is done again.
- *decode* (:mod:`~vdsr_deploy.job.decode`, one feed thread and ``load_threads`` workers):
  reads each file's header, reserves its decoded size from the input budget (half of
  ``memory_mb``, :mod:`~vdsr_deploy.job.budget`), and decodes it.
- *prepare* (:mod:`~vdsr_deploy.job.prepare`, one thread): cuts each decoded image into
  row bands, one per row of tiles, with their bicubic Y/CbCr/alpha planes: exactly the rows
  of the whole-image planes, computed in bounded chunks. Bands take the other half of the
  budget.
- *infer* (:mod:`~vdsr_deploy.job.run`, the calling thread):
  :func:`vdsr_deploy.planes.pipeline.upscale_planes` fills batches with tiles of any bands and
  images; when nothing is ready it flushes partial batches so the accelerator never waits
  for a full batch.
- *encode* (:mod:`~vdsr_deploy.job.encode`, ``save_threads``): recombines colour,
  quantizes, and streams the band's rows into the output file (PNG and 16-bit TIFF are
  written row by row); the last band finishes the file atomically.

So a huge image costs its decoded samples plus a few bands, never whole float planes.

Never losing work: one job at a time writes to an output folder (:mod:`vdsr_deploy.job.lock`);
outputs are written to a temporary file and renamed into place; the resume manifest
(:mod:`vdsr_deploy.job.manifest`) records each finished output with its size, SHA-256 and
settings, so a re-run skips complete outputs and redoes the rest. A stop request
(:func:`stop_on_signals`, :mod:`~vdsr_deploy.job.signals`: SIGINT/SIGTERM) or Ctrl-C ends
the job cleanly (:mod:`~vdsr_deploy.job.halt`): unfinished outputs leave no file behind and
the summary lists what finished. A file that fails is reported with its name and the reason
and the rest of the job goes on.

One video (:mod:`~vdsr_deploy.job.video`, :func:`~vdsr_deploy.job.video.run_video_job`) runs
the same stages over its frames, resumable by keyframe segments (docs/video.md).
"""

from vdsr_deploy.job.config import JobConfig, WorkItem
from vdsr_deploy.job.plan import ResumePlan, manifest_folder, plan_job, plan_outputs, plan_resume
from vdsr_deploy.job.report import EventSink, Failure, JobSummary, Note, Skipped
from vdsr_deploy.job.run import run_job
from vdsr_deploy.job.signals import StopRequest, exit_at_once, stop_on_signals

__all__ = [
    "EventSink",
    "Failure",
    "JobConfig",
    "JobSummary",
    "Note",
    "ResumePlan",
    "Skipped",
    "StopRequest",
    "WorkItem",
    "exit_at_once",
    "manifest_folder",
    "plan_job",
    "plan_outputs",
    "plan_resume",
    "run_job",
    "stop_on_signals",
]

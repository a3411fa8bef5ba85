"""Runtime parity as data: every runtime/precision against the PyTorch FP32 reference.

:func:`validate` runs the reference (PyTorch FP32, TF32 off on CUDA) and each requested
candidate (ONNX Runtime FP32, the FP16 ONNX graph, PyTorch bf16/fp16, TensorRT FP32/FP16,
whole-image vs tiled) on the same images, and returns a frozen :class:`ValidationReport`:
figures, the tolerance each pair was judged by, pass/fail and reasons. Rendering (terminal
table, Markdown, heatmap) lives elsewhere (:func:`render_markdown`, :mod:`vdsr_deploy.parity.plots`,
the CLI).

What is compared, per image:

- the network's output Y plane as float (``[0, 1]`` nominal, not clipped): max, mean and
  99th-percentile absolute error over finite pixels, and the count of NaN/Inf in the
  candidate; PSNR of the candidate's Y against the reference's Y (both clipped to [0, 1],
  non-finite values replaced by 0, peak 1);
- the same Y output converted to 8-bit (and 16-bit on request) the way images are written
  (clip, round half to even): the share of identical pixels and the histogram of the
  differences in LSB. Y is what the runtimes compute; chroma and alpha are the same numpy
  code for every runtime, so the RGB channels differ exactly where Y does;
- with HR images: task PSNR (Y, shave = scale, peak 255, the paper's protocol) of reference
  and candidate against the HR image, and the difference.

Candidates run with the configured tiling; the reference too, so runtime pairs differ only
by the runtime. The ``untiled`` pair compares whole-image PyTorch FP32 against the tiled
reference and so isolates tiling (exact by construction up to float rounding).

The package, one job per module: :mod:`.tolerances` (the limits), :mod:`.images` (what is
upscaled; folders and HR images through :mod:`vdsr_deploy.evaluation.run`'s listing and protocol),
:mod:`.figures` (the comparison maths and :func:`judge`), :mod:`.artifacts` (ONNX metadata
and engine sidecar checks), :mod:`.run` (candidates, running, the report).
"""

from __future__ import annotations

from vdsr_deploy.parity.artifacts import (
    ArtifactCheck,
    check_engine_sidecar,
    check_onnx,
)
from vdsr_deploy.parity.figures import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    ImageFigures,
    PairFigures,
    PairResult,
    QuantFigures,
    RunOutput,
    compare_outputs,
    image_figures,
    judge,
    merge_quant,
    pair_figures,
    psnr_vs_reference,
    quant_figures,
    task_psnr,
)
from vdsr_deploy.parity.images import (
    F32,
    F64,
    SAMPLE_IMAGE_NAME,
    ValidationImage,
    default_images,
    edge_case_images,
    folder_images,
    hr_images,
    sample_image,
)
from vdsr_deploy.parity.run import (
    CANDIDATES,
    DEFAULT_CANDIDATES,
    ORT_CPU_FP16_NOTE,
    Candidate,
    EventSink,
    RunnerFactory,
    ValidateConfig,
    ValidationReport,
    run_images,
    validate,
    validate_runners,
)
from vdsr_deploy.parity.tolerances import (
    TOLERANCE_BF16,
    TOLERANCE_CLASSES,
    TOLERANCE_FP16,
    TOLERANCE_FP32,
    TOLERANCE_INT8,
    TOLERANCE_TILING,
    Tolerance,
    ToleranceConfig,
)

__all__ = [
    "CANDIDATES",
    "DEFAULT_CANDIDATES",
    "ERROR",
    "F32",
    "F64",
    "FAILED",
    "ORT_CPU_FP16_NOTE",
    "PASSED",
    "SAMPLE_IMAGE_NAME",
    "SKIPPED",
    "TOLERANCE_BF16",
    "TOLERANCE_CLASSES",
    "TOLERANCE_FP16",
    "TOLERANCE_FP32",
    "TOLERANCE_INT8",
    "TOLERANCE_TILING",
    "ArtifactCheck",
    "Candidate",
    "EventSink",
    "ImageFigures",
    "PairFigures",
    "PairResult",
    "QuantFigures",
    "RunOutput",
    "RunnerFactory",
    "Tolerance",
    "ToleranceConfig",
    "ValidateConfig",
    "ValidationImage",
    "ValidationReport",
    "check_engine_sidecar",
    "check_onnx",
    "compare_outputs",
    "default_images",
    "edge_case_images",
    "folder_images",
    "hr_images",
    "image_figures",
    "judge",
    "merge_quant",
    "pair_figures",
    "psnr_vs_reference",
    "quant_figures",
    "run_images",
    "sample_image",
    "task_psnr",
    "validate",
    "validate_runners",
]

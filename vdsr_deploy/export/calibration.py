"""What a lossy fast path costs, measured on data that ships with the package.

``assets/calibration_tiles.npz`` holds small 96x96 HR tiles (Y, uint8) cut from
procedurally drawn scenes (no third-party picture; ``benchmarks/make_calibration_tiles.py``
renders them and records each tile's scene and position). The first ``calibration`` tiles
calibrate INT8 activation ranges; the rest, from other scenes, are held out to measure
quality: each is degraded by the paper's protocol at x2, x3 and x4, run through the
reference and the candidate, and scored against the HR tile (PSNR on Y, peak 255, shave =
scale). A user's own images can replace them (:func:`calibration_set_from_images`,
``vdsr export -p int8 --calibration DIR``). :func:`quality_cost` returns the mean PSNR
change per scale, the figure ``--precision auto`` reads from an artifact's record.

:func:`cached_cost` keeps such a record for paths without an ONNX artifact to carry it
(PyTorch bf16): a JSON file keyed like an artifact (weights, versions, CPU).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError, VdsrError
from vdsr_deploy.fileops import atomic_write_bytes

CALIBRATION_ASSET = "calibration_tiles.npz"
TILE = 96
SCALES = (2, 3, 4)
COST_DECIMALS = 4
Infer = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""A batch ``(N, 1, H, W)`` float32 network input -> output of the same shape."""


@dataclass(frozen=True)
class CalibrationSet:
    """HR Y tiles in [0, 1] (``(N, TILE, TILE)`` float64), where each came from, and how many
    of the first calibrate (the rest are held out for :func:`quality_cost`)."""

    hr: NDArray[np.float64]
    sources: tuple[str, ...]
    calibration: int
    sha256: str
    origin: str = "shipped"
    """Where the tiles came from: ``shipped`` (the package's procedural tiles) or a folder."""

    def __post_init__(self) -> None:
        if self.hr.ndim != 3 or not 0 < self.calibration < self.hr.shape[0]:
            raise InvalidInputError(
                f"calibration set: expected (N, H, W) tiles with 0 < calibration < N, got "
                f"{self.hr.shape} and {self.calibration}"
            )

    @property
    def calibration_tiles(self) -> NDArray[np.float64]:
        return self.hr[: self.calibration]

    @property
    def held_out(self) -> NDArray[np.float64]:
        return self.hr[self.calibration :]


def default_calibration_path() -> Path:
    return Path(str(resources.files("vdsr_deploy.assets").joinpath(CALIBRATION_ASSET)))


def load_calibration_set(path: Path | None = None) -> CalibrationSet:
    """The shipped calibration tiles (or those in ``path``), hashed by content."""
    source = Path(path) if path is not None else default_calibration_path()
    try:
        with np.load(source, allow_pickle=False) as data:
            tiles = np.asarray(data["hr_y"], dtype=np.uint8)
            sources = tuple(str(s) for s in data["source"])
            calibration = int(data["calibration"])
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise VdsrError(f"{source}: cannot read the calibration tiles ({error})") from error
    return _calibration_set(tiles, sources, calibration, "shipped" if path is None else str(source))


def calibration_set_from_images(folder: Path, held_out_share: float = 0.375) -> CalibrationSet:
    """A calibration set from the images in ``folder`` (a user's own kind of pictures): each
    image's Y (rounded to 8 bits) cut into non-overlapping ``TILE`` tiles; the tiles of the
    last images (about ``held_out_share`` of all tiles, at least one image's worth) are held
    out, so they measure the cost on images that did not calibrate."""
    from vdsr_deploy.imageio.folders import hr_luma, list_images

    per_image: list[list[tuple[NDArray[np.uint8], str]]] = []
    for path in list_images(Path(folder)):
        y = np.rint(hr_luma(path) * 255.0).astype(np.uint8)
        cut = [
            (y[top : top + TILE, left : left + TILE], f"{path.name}@{top},{left}")
            for top in range(0, y.shape[0] - TILE + 1, TILE)
            for left in range(0, y.shape[1] - TILE + 1, TILE)
        ]
        if cut:
            per_image.append(cut)
    if len(per_image) < 2:
        raise InvalidInputError(
            f"{folder}: calibration needs at least 2 images of {TILE}x{TILE} px or more "
            f"(some calibrate, the others measure the cost), found {len(per_image)}"
        )
    total = sum(len(tiles) for tiles in per_image)
    held: list[tuple[NDArray[np.uint8], str]] = []
    while per_image and (not held or len(held) < held_out_share * total) and len(per_image) > 1:
        held = per_image.pop() + held
    tiles = [tile for image in per_image for tile in image] + held
    return _calibration_set(
        np.stack([t for t, _ in tiles]), tuple(s for _, s in tiles), total - len(held), origin=str(folder)
    )


def _calibration_set(
    tiles: NDArray[np.uint8], sources: tuple[str, ...], calibration: int, origin: str = "shipped"
) -> CalibrationSet:
    """Tiles in [0, 1], hashed by what they are (pixels, shape, split), not by file bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(tiles.shape), calibration]).encode())
    digest.update(np.ascontiguousarray(tiles, dtype=np.uint8).tobytes())
    return CalibrationSet(tiles.astype(np.float64) / 255.0, sources, calibration, digest.hexdigest(), origin)


def contrast_guard_tiles() -> NDArray[np.float64]:
    """HR tiles ``(1, TILE, TILE)`` that every INT8 calibration adds to its data: a
    full-contrast (Y 16 / 235) checkerboard of 4-px squares.

    Photos rarely have black-to-white edges, text and line art do, and they drive the
    network's activations about 2x past what the shipped tiles reach (measured per ReLU on
    the shipped weights: 1.1-2.4x), so a range calibrated without them clips and a 1-px
    edge pattern came out 70 levels off. This one tile widens the ranges enough: on the
    generated edge pattern (8-px checker with 1-px lines, not this tile) the worst
    difference to FP32 fell from 0.32 to 0.05 at x2 (0.10 -> 0.06 at x3, 0.07 -> 0.12 at
    x4), for 0.011 dB more cost at x2 on the held-out tiles (x3/x4 within +-0.015 dB).
    Checkers of 8 px, 2 px and line grids were tried too (benchmarks/README.md)."""
    square = 4
    cells = (np.arange(TILE)[:, None] // square + np.arange(TILE)[None, :] // square) % 2
    return np.asarray((16.0 + 219.0 * cells[None]) / 255.0, dtype=np.float64)


def degraded(tiles: NDArray[np.float64], scale: int) -> NDArray[np.float32]:
    """Network inputs ``(N, 1, H, W)``: each HR tile down and up by MATLAB bicubic."""
    planes = [protocol.degrade(protocol.modcrop(tile, scale), scale) for tile in tiles]
    return np.ascontiguousarray(np.stack(planes)[:, None], dtype=np.float32)


def calibration_inputs(
    calibration: CalibrationSet, scales: Sequence[int] = SCALES, *, guard: bool = True
) -> list[NDArray[np.float32]]:
    """One ``(H, W)`` plane per calibration tile and scale (tile-major, deterministic), then
    (with ``guard``) :func:`guard_inputs`."""
    batches = [degraded(calibration.calibration_tiles, s) for s in scales]
    planes = [batch[i, 0] for i in range(calibration.calibration) for batch in batches]
    return planes + guard_inputs(scales) if guard else planes


def guard_inputs(scales: Sequence[int] = SCALES) -> list[NDArray[np.float32]]:
    """The :func:`contrast_guard_tiles` degraded at each scale, as ``(H, W)`` planes."""
    tiles = contrast_guard_tiles()
    batches = [degraded(tiles, s) for s in scales]
    return [batch[i, 0] for i in range(len(tiles)) for batch in batches]


def _mean_psnr(outputs: NDArray[np.float32], hr: NDArray[np.float64], scale: int) -> float:
    scores = []
    for output, target in zip(outputs[:, 0], hr, strict=True):
        scores.append(protocol.task_psnr(output, target, scale))
    return math.fsum(scores) / len(scores)


def quality_cost(
    reference: Infer,
    candidate: Infer,
    calibration: CalibrationSet,
    scales: Sequence[int] = SCALES,
) -> dict[str, float]:
    """Mean task-PSNR change (candidate - reference, dB) on the held-out tiles per scale,
    keyed ``x2``, ``x3``, ...; rounded to 1e-4 dB so that records compare exactly."""
    cost: dict[str, float] = {}
    for scale in scales:
        hr = np.stack([protocol.modcrop(t, scale) for t in calibration.held_out])
        inputs = degraded(calibration.held_out, scale)
        delta = _mean_psnr(candidate(inputs), hr, scale) - _mean_psnr(reference(inputs), hr, scale)
        cost[f"x{scale}"] = round(delta, COST_DECIMALS)
    return cost


def cached_cost(record: Path, key: Mapping[str, Any], measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The cost recorded in ``record`` when its key equals ``key``; otherwise measured now
    and recorded (atomically). A record with another key is never used."""
    try:
        stored = json.loads(record.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == dict(key):
            return {str(k): float(v) for k, v in stored["cost_db"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    cost = measure()
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(record, json.dumps({"key": dict(key), "cost_db": cost}, indent=2).encode("utf-8"))
    return cost

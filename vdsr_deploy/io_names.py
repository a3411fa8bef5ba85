"""The one source of truth for tensor names, axes and shape profiles.

Used by the ONNX exporter, the ONNX Runtime and TensorRT runners and the engine builder, so
they can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vdsr_deploy.errors import ConfigError

INPUT_NAME = "input"
OUTPUT_NAME = "output"
DYNAMIC_AXES: dict[int, str] = {0: "batch", 2: "height", 3: "width"}
CHANNELS = 1
OPSET = 17

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeProfile:
    """An optimization profile for the input tensor: ``(N, 1, H, W)`` min/opt/max."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for axis in range(4):
            if not (1 <= self.min[axis] <= self.opt[axis] <= self.max[axis]):
                raise ConfigError(
                    f"profile axis {axis}: expected 1 <= min <= opt <= max, got "
                    f"{self.min[axis]}, {self.opt[axis]}, {self.max[axis]}"
                )
        if self.min[1] != CHANNELS or self.max[1] != CHANNELS:
            raise ConfigError(
                f"profile: expected {CHANNELS} channel, got {self.min[1]}..{self.max[1]}"
            )

    def contains(self, shape: Shape) -> bool:
        return all(self.min[a] <= shape[a] <= self.max[a] for a in range(4))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, values: dict[str, list[int]]) -> ShapeProfile:
        def shape(key: str) -> Shape:
            v = values[key]
            return (int(v[0]), int(v[1]), int(v[2]), int(v[3]))

        return cls(shape("min"), shape("opt"), shape("max"))


class Tiled(Protocol):
    """What a profile needs of a tiling: its tile side (0: whole images),
    e.g. :class:`~vdsr_deploy.planes.tiling.TileConfig`."""

    @property
    def tile(self) -> int: ...


def profile_for_tiles(
    tiling: Tiled, batch: int, *, max_side: int | None = None
) -> ShapeProfile:
    """The profile matching what the tiler feeds: full tiles of ``tile`` x ``tile`` at
    ``batch`` (the optimum), and anything from 1x1 up to a tile for images or axes smaller
    than a tile. With ``tile`` 0 (whole images), ``max_side`` bounds the image side."""
    if batch < 1:
        raise ConfigError(f"batch: expected >= 1, got {batch}")
    side = tiling.tile if tiling.tile else max_side
    if not side:
        raise ConfigError("a profile for whole-image inference (tile 0) needs max_side")
    return ShapeProfile(
        min=(1, CHANNELS, 1, 1),
        opt=(batch, CHANNELS, side, side),
        max=(batch, CHANNELS, side, side),
    )

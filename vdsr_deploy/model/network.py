"""The VDSR network (Kim, Lee & Lee, CVPR 2016), exactly as in the paper.

``depth`` 3x3 convolutions with zero padding 1, ReLU after all but the last, first layer
``in_channels -> channels``, last ``channels -> in_channels``, and a global residual:
``output = input + residual(input)``. No I/O here.
"""

from __future__ import annotations

import torch
from torch import nn

from vdsr_deploy.errors import ConfigError

RECEPTIVE_FIELD_RADIUS_PER_LAYER = 1


class VDSR(nn.Module):
    """VDSR on a single (luma) channel.

    Input: ``(N, 1, H, W)`` float tensor, the bicubic-upscaled Y channel in ``[0, 1]``
    (values outside are allowed and passed through). Output: same shape and dtype.
    """

    def __init__(self, *, depth: int = 20, channels: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"expected depth >= 2, got {depth}")
        if channels < 1 or in_channels < 1:
            raise ConfigError(f"expected channels >= 1, got channels={channels}")
        self.depth = depth
        self.channels = channels
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        for index in range(depth):
            c_in = in_channels if index == 0 else channels
            c_out = in_channels if index == depth - 1 else channels
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=True))
            if index < depth - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    @property
    def receptive_field_radius(self) -> int:
        """Pixels on each side that influence one output pixel (20 for the paper's model)."""
        return self.depth * RECEPTIVE_FIELD_RADIUS_PER_LAYER

    def reset_parameters(self) -> None:
        """He initialisation (Kaiming normal, fan-in, ReLU gain) and zero biases."""
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                assert module.bias is not None
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual.to(x.dtype)


def multiply_adds_per_pixel(depth: int = 20, channels: int = 64, in_channels: int = 1) -> int:
    """Multiply-adds per output pixel (664,704 for the paper's model)."""
    inner = (depth - 2) * channels * channels
    return 9 * (in_channels * channels + inner + channels * in_channels)


def flops_per_pixel(depth: int = 20, channels: int = 64) -> int:
    """FLOPs (2 per multiply-add) per output pixel."""
    return 2 * multiply_adds_per_pixel(depth, channels)


def count_weights(model: nn.Module, *, with_bias: bool = False) -> int:
    """Number of conv weights (biases excluded unless asked)."""
    return sum(
        p.numel() for name, p in model.named_parameters() if with_bias or not name.endswith("bias")
    )

"""Convert pytorch-vdsr's public weights to this project's safetensors layout, safely.

pytorch-vdsr (github.com/twtygqyy/pytorch-vdsr, MIT) ships ``model/model_epoch_50.pth``: a
whole model pickled by PyTorch 0.2-era ``torch.save`` (the legacy, non-zip format) inside
``{"epoch": 50, "model": Net}``. Unpickling it the usual way would import their ``vdsr``
module and run whatever the pickle names. Here a restricted unpickler resolves exactly the
names that file uses, and nothing else:

- their module classes (``vdsr.Net``, ``vdsr.Conv_ReLU_Block``, ``torch.nn`` ``Conv2d``,
  ``ReLU``, ``Sequential``) become an inert :class:`_Stub` that only stores its state;
- ``torch.nn.backends.thnn._get_thnn_function_backend`` (an attribute of 2017 modules)
  becomes a function returning None;
- ``collections.OrderedDict``, ``set`` and the tensor rebuilders (``torch._utils``
  ``_rebuild_tensor``/``_rebuild_tensor_v2``) are the real ones (they only build
  containers and tensors); ``Parameter``/``_rebuild_parameter`` return the plain tensor;
  storages are handled by ``torch.load`` itself.

Any other name is refused (:class:`UnsafePickle`). Same architecture as ours (20 3x3
convolutions, 64 channels, ReLU, zero padding 1, global residual, Y in [0, 1]) but without
biases: their ``input``, ``residual_layer.0..17.conv`` and ``output`` weights map to our
``body.0, body.2, ..., body.38`` weights, and our biases are set to zero. The converted
file carries the source file's sha256 and URL in its metadata. Their weights are not
committed here; fetch the file yourself, e.g.::

    git clone --depth 1 https://github.com/twtygqyy/pytorch-vdsr /tmp/pytorch-vdsr
    python benchmarks/pytorch_vdsr.py /tmp/pytorch-vdsr/model/model_epoch_50.pth \\
        -o /tmp/pytorch_vdsr.safetensors
    vdsr eval ../shared/data/val/set5 ../shared/data/val/set14 --device cpu \\
        -w /tmp/pytorch_vdsr.safetensors --out benchmarks/results/pytorch-vdsr

The script also checks the conversion: our VDSR with the converted weights against a
reimplementation of their ``Net.forward`` (conv without bias, ReLU, residual add) on a
random input.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import pickle
import types
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import load_weights, save_weights

SOURCE_URL = "https://github.com/twtygqyy/pytorch-vdsr/blob/master/model/model_epoch_50.pth"
DEPTH = 20
CHANNELS = 64


class UnsafePickle(Exception):
    """The pickle names something outside the allow-list."""


class _Stub:
    """Stands in for a pickled ``nn.Module``: keeps its ``__dict__`` state, runs nothing.
    (``torch.load`` compares a legacy file's stored module source with the class's; with
    ``dump_patches`` off a difference is only a warning.)"""

    dump_patches = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _no_backend(*args: object) -> None:
    return None


def _parameter(data: torch.Tensor, *rest: object) -> torch.Tensor:
    return data


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.nn.parameter", "Parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _no_backend,
    ("vdsr", "Net"): _Stub,
    ("vdsr", "Conv_ReLU_Block"): _Stub,
    ("torch.nn.modules.conv", "Conv2d"): _Stub,
    ("torch.nn.modules.activation", "ReLU"): _Stub,
    ("torch.nn.modules.container", "Sequential"): _Stub,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickle(f"refusing to load {module}.{name} from the pickle") from None


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


RESTRICTED_PICKLE = types.SimpleNamespace(
    Unpickler=RestrictedUnpickler, load=_restricted_load, __name__="restricted_pickle"
)


def read_their_weights(path: Path) -> dict[str, torch.Tensor]:
    """Their 20 conv weights in order (input, 18 residual layers, output); no biases."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "source code of class ... has changed": a stub's
        checkpoint = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE
        )
    net = checkpoint["model"] if isinstance(checkpoint, dict) else checkpoint
    modules = net._modules
    blocks = list(modules["residual_layer"]._modules.values())
    convs = [modules["input"], *(block._modules["conv"] for block in blocks), modules["output"]]
    if len(convs) != DEPTH:
        raise SystemExit(f"{path}: expected {DEPTH} conv layers, found {len(convs)}")
    weights: dict[str, torch.Tensor] = {}
    for index, conv in enumerate(convs):
        params = conv._parameters
        if params.get("bias") is not None:
            raise SystemExit(f"{path}: layer {index} has a bias; this script assumes none")
        weights[f"body.{2 * index}.weight"] = params["weight"].detach().float().clone()
    return weights


def their_forward(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """pytorch-vdsr's ``Net.forward``, written out: conv (no bias) + ReLU x 19, conv, + x."""
    out = x
    for index in range(DEPTH):
        out = F.conv2d(out, weights[f"body.{2 * index}.weight"], padding=1)
        if index < DEPTH - 1:
            out = F.relu(out)
    return out + x


def convert(pth: Path, output: Path) -> tuple[str, str, float]:
    """Write ``output`` from ``pth``; the source's sha256, the weights' sha256 and the largest
    difference between our VDSR with them and their forward pass on a random input."""
    source_sha = hashlib.sha256(pth.read_bytes()).hexdigest()
    weights = read_their_weights(pth)
    model = VDSR(depth=DEPTH, channels=CHANNELS)
    state = model.state_dict()
    for name in state:
        state[name] = weights[name] if name.endswith("weight") else torch.zeros_like(state[name])
    model.load_state_dict(state)
    training = {
        "recipe": {"name": "pytorch-vdsr model_epoch_50 (converted)"},
        "source": {"url": SOURCE_URL, "sha256": source_sha, "biases": "none (set to zero)"},
        "converted_by": "benchmarks/pytorch_vdsr.py",
    }
    save_weights(model.eval(), output, training=training)

    loaded, info = load_weights(output)
    x = torch.rand(1, 1, 37, 29, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = float((loaded(x) - their_forward(weights, x)).abs().max().item())
    return source_sha, info.sha256, difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pth", type=Path, help="pytorch-vdsr's model/model_epoch_50.pth")
    parser.add_argument("-o", "--output", type=Path, required=True, help="safetensors to write")
    args = parser.parse_args()
    source_sha, weights_sha, difference = convert(args.pth, args.output)
    if difference > 1e-5:
        raise SystemExit(f"conversion check failed: max |ours - theirs| = {difference:.2e}")
    print(f"{args.output}: converted from {args.pth} (sha256 {source_sha[:16]}...)")
    print(f"  weights sha256 {weights_sha[:16]}...; ours vs their forward: max |diff| {difference:.1e}")


if __name__ == "__main__":
    main()

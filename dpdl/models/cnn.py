"""Convolutional classifiers for small images: ``SimpleCNN`` and the deeper ``BetterCNN`` (labs 5 and 6).

Convolutions share weights across positions, so they need far fewer parameters than ``BaselineMLP``
for a better MNIST score. The flatten size is computed from ``input_size`` so the same code fits 28x28
digits and, say, 64x64 photos.
"""

from __future__ import annotations

from torch import Tensor, nn

from dpdl._checks import check_sizes

__all__ = ["SimpleCNN", "BetterCNN"]


class SimpleCNN(nn.Module):
    """``conv 32@3x3 -> ReLU -> maxpool 2 -> flatten -> Linear 128 -> ReLU -> Linear num_classes``.

    Input ``(B, in_channels, input_size, input_size)``; returns logits ``(B, num_classes)``. For MNIST
    (28x28) the feature map is 32 x 13 x 13 = 5408 numbers before the first linear layer.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 28) -> None:
        super().__init__()
        check_sizes("SimpleCNN", in_channels=in_channels, num_classes=num_classes)
        self.in_channels = in_channels
        self.input_size = _check_input_size("SimpleCNN", input_size)
        height, width = (_pool(_conv(side, 3)) for side in self.input_size)
        _check_feature_map("SimpleCNN", self.input_size, height, width, minimum=4)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * height * width, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, in_channels, H, W)`` with ``(H, W) = input_size`` -> logits ``(B, num_classes)``."""
        check_images("SimpleCNN", x, self.in_channels, self.input_size)
        return self.classifier(self.features(x))


class BetterCNN(nn.Module):
    """Two conv blocks, dropout and three linear layers — the deeper CNN of lab 4, trained from scratch in lab 6.

    ``conv 30@5x5 -> ReLU -> maxpool 2 -> conv 15@3x3 -> ReLU -> maxpool 2 -> dropout(0.2) -> flatten
    -> Linear 128 -> ReLU -> Linear 50 -> ReLU -> Linear num_classes``. Convolutions are unpadded, so a
    side ``s`` shrinks to ``((s - 4) // 2 - 2) // 2``: 28 -> 5 (15*5*5 = 375 features), 64 -> 14.
    Input ``(B, in_channels, input_size, input_size)``; returns logits ``(B, num_classes)``. Call
    ``model.eval()`` before evaluating so dropout is switched off.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 28) -> None:
        super().__init__()
        check_sizes("BetterCNN", in_channels=in_channels, num_classes=num_classes)
        self.in_channels = in_channels
        self.input_size = _check_input_size("BetterCNN", input_size)
        height, width = (_pool(_conv(_pool(_conv(side, 5)), 3)) for side in self.input_size)
        _check_feature_map("BetterCNN", self.input_size, height, width, minimum=12)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 30, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(30, 15, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(15 * height * width, 128),
            nn.ReLU(),
            nn.Linear(128, 50),
            nn.ReLU(),
            nn.Linear(50, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, in_channels, H, W)`` with ``(H, W) = input_size`` -> logits ``(B, num_classes)``."""
        check_images("BetterCNN", x, self.in_channels, self.input_size)
        return self.classifier(self.features(x))


def check_images(model_name: str, x: Tensor, in_channels: int, input_size: tuple[int, int]) -> None:
    """Raise a ``ValueError`` naming the expected shape unless ``x`` is ``(B, in_channels, *input_size)``."""
    height, width = input_size
    expected = f"(B, {in_channels}, {height}, {width})"
    if x.dim() != 4:
        if x.dim() == 3 and tuple(x.shape) == (in_channels, height, width):
            fix = "add the batch dimension with x.unsqueeze(0)"
        elif x.dim() == 2 and x.shape[1] == in_channels * height * width:
            fix = f"reshape flat images with x.view(-1, {in_channels}, {height}, {width})"
        else:
            fix = "pass a batch of images (B, C, H, W)"
        raise ValueError(f"{model_name} expects images of shape {expected}; got shape {tuple(x.shape)} — {fix}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{model_name}(in_channels={in_channels}) expects images of shape {expected}; got "
            f"{x.shape[1]} channels in shape {tuple(x.shape)} — build it with in_channels={x.shape[1]} "
            "or convert the images (transforms.Grayscale)"
        )
    if tuple(x.shape[2:]) != (height, width):
        size = x.shape[2] if x.shape[2] == x.shape[3] else tuple(x.shape[2:])
        raise ValueError(
            f"{model_name}(input_size={_size_text(input_size)}) expects images of shape {expected}; got "
            f"shape {tuple(x.shape)} — resize the images (transforms.Resize) or build it with input_size={size}"
        )


def _conv(side: int, kernel: int) -> int:
    return side - kernel + 1  # stride 1, no padding


def _pool(side: int) -> int:
    return side // 2  # MaxPool2d(2) floors


def _check_input_size(model_name: str, input_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if (
        not isinstance(input_size, (tuple, list))
        or len(input_size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_size)
    ):
        raise ValueError(
            f"{model_name}: input_size must be a positive int (square images) or (H, W); got {input_size!r}"
        )
    return (input_size[0], input_size[1])


def _check_feature_map(model_name: str, input_size: tuple[int, int], height: int, width: int, minimum: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(
            f"{model_name}: input_size={_size_text(input_size)} is too small — the convolutions and pooling "
            f"leave no pixels; use images of at least {minimum}x{minimum}"
        )


def _size_text(input_size: tuple[int, int]) -> str:
    return str(input_size[0]) if input_size[0] == input_size[1] else str(input_size)

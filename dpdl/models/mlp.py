"""The baseline multilayer perceptron: flatten an image, one hidden ReLU layer, logits out (lab 4 and on).

It is the yardstick every later model (CNNs in lab 5, transfer learning in lab 6) has to beat on MNIST.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from dpdl._checks import check_sizes

__all__ = ["BaselineMLP"]


class BaselineMLP(nn.Module):
    """``flatten -> Linear(in_features, hidden) -> ReLU -> Linear(hidden, num_classes)``.

    Returns *logits* ``(B, num_classes)``, no softmax: ``nn.CrossEntropyLoss`` applies log-softmax
    itself, and ``logits.argmax(1)`` is the predicted class. Accepts any batch whose examples hold
    ``in_features`` numbers, e.g. MNIST ``(B, 1, 28, 28)`` or ``(B, 784)``.
    """

    def __init__(self, in_features: int = 784, hidden: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        check_sizes("BaselineMLP", in_features=in_features, hidden=hidden, num_classes=num_classes)
        self.in_features = in_features
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *)`` with ``in_features`` numbers per example -> logits ``(B, num_classes)``."""
        x = flatten_batch("BaselineMLP", x, self.in_features)
        return self.fc2(self.fc1(x).relu())


def flatten_batch(model_name: str, x: Tensor, in_features: int) -> Tensor:
    """``(B, *)`` -> ``(B, in_features)``, or a ``ValueError`` saying which shape was expected."""
    if x.dim() < 2:
        raise ValueError(
            f"{model_name} expects a batch of shape (B, {in_features}) or (B, 1, 28, 28)-like; got a "
            f"{x.dim()}-d tensor of shape {tuple(x.shape)} — add the batch dimension with x.unsqueeze(0)"
        )
    features = math.prod(x.shape[1:])
    if features != in_features:
        if x.dim() == 4 and x.shape[1] == 3 and 3 * in_features == features:
            hint = "convert the images to grayscale (transforms.Grayscale)"
        else:
            hint = "resize the input"
        hint += f" or build the model with in_features={features}"
        raise ValueError(
            f"{model_name}(in_features={in_features}) expects {in_features} numbers per example, e.g. "
            f"{_example_shape(in_features)}; got shape {tuple(x.shape)} = {features} per example — {hint}"
        )
    return x.reshape(x.shape[0], in_features)


def _example_shape(in_features: int) -> str:
    side = math.isqrt(in_features)
    if side * side == in_features:
        return f"(B, 1, {side}, {side}) or (B, {in_features})"
    return f"(B, {in_features})"

"""Reference models shared by the labs: an MLP baseline, two CNNs, an autoencoder, a VAE, a DCGAN, a seq2seq
Transformer and LSTM, a small U-Net for diffusion.

Labs build these so they can spend their cells on training and analysis; classifiers and decoders return
logits (the DCGAN's generator returns images in [-1, 1]).
``pretrained(name)`` (lab 6, offline ImageNet weights) is imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from dpdl.models.autoencoder import VAE, MLPAutoencoder
from dpdl.models.cnn import BetterCNN, SimpleCNN
from dpdl.models.gan import DCGANDiscriminator, DCGANGenerator
from dpdl.models.mlp import BaselineMLP
from dpdl.models.seq2seq_lstm import Seq2SeqLSTM
from dpdl.models.transformer import PositionalEncoding, Seq2SeqTransformer, greedy_decode
from dpdl.models.unet import SmallUNet

# Where ``pretrained`` lives; imported on first use because it loads the EfficientNet code (seconds).
_PRETRAINED_MODULE = "dpdl.models.pretrained_models"

__all__ = [
    "BaselineMLP",
    "SimpleCNN",
    "BetterCNN",
    "MLPAutoencoder",
    "VAE",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "Seq2SeqTransformer",
    "PositionalEncoding",
    "greedy_decode",
    "Seq2SeqLSTM",
    "SmallUNet",
    "count_parameters",
    "pretrained",
]


def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in ``model`` (parameters with ``requires_grad``), e.g. 623,290 for ``BaselineMLP()``.

    Frozen layers (``requires_grad_(False)``, as in transfer learning) are not counted; shared
    parameters are counted once.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects a torch.nn.Module; got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def __getattr__(name: str) -> Any:
    # ``pretrained`` pulls in the EfficientNet code and weights: import it on first use only.
    if name != "pretrained":
        raise AttributeError(f"module 'dpdl.models' has no attribute {name!r}")
    try:
        module = importlib.import_module(_PRETRAINED_MODULE)
    except ModuleNotFoundError as err:
        if err.name != _PRETRAINED_MODULE:
            raise  # a dependency of that module is missing: let its own message through
        raise AttributeError(f"dpdl.models.pretrained is not available: {_PRETRAINED_MODULE} is missing") from err
    function = module.pretrained
    globals()["pretrained"] = function
    return function


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"pretrained"})

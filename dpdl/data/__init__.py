"""Data for the labs: a registry of datasets with checksums, one verified cache, and loaders (labs 1-8).

``fetch(name)`` puts a dataset's files in the cache (from a mirror or the official URL, sha256-checked)
and returns the cache root; the loaders (``mnist``, ``hymenoptera``, ``imdb``, …) build on it.
See ``datasets/README.md`` for the registry and ``dpdl data --help`` for the command line.
"""

from __future__ import annotations

import importlib

from dpdl.data import registry
from dpdl.data.download import ChecksumError, DataUnavailableError
from dpdl.data.store import DataWarning, cache_dir, fetch, file_path, locations, verify

# Loaders live in their own modules and import torch/torchvision; they load on first use.
_LAZY = {
    "mnist": "dpdl.data.vision",
    "fashion_mnist": "dpdl.data.vision",
    "mnist_tensors": "dpdl.data.vision",
    "fashion_mnist_tensors": "dpdl.data.vision",
    "hymenoptera": "dpdl.data.vision",
    "hymenoptera_transform": "dpdl.data.vision",
    "hymenoptera_photos": "dpdl.data.vision",
    "Photos": "dpdl.data.vision",
    "TensorLoader": "dpdl.data.fast",
    "mnist_loaders": "dpdl.data.fast",
    "nietzsche_text": "dpdl.data.text",
    "glove": "dpdl.data.text",
    "GloVe": "dpdl.data.text",
    "imdb": "dpdl.data.text",
    "TextSplit": "dpdl.data.text",
    "tokenize": "dpdl.data.text",
    "Vocab": "dpdl.data.text",
    "pad_batch": "dpdl.data.text",
    "BucketLoader": "dpdl.data.text",
    "morse_pairs": "dpdl.data.morse",
    "morse_vocabs": "dpdl.data.morse",
    "sklearn_dataset": "dpdl.data.tabular",
    "sample_digits": "dpdl.data.digits",
}

__all__ = [
    "fetch",
    "file_path",
    "locations",
    "cache_dir",
    "verify",
    "registry",
    "DataUnavailableError",
    "ChecksumError",
    "DataWarning",
    *_LAZY,
]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dpdl.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

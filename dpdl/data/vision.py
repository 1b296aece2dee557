"""Image datasets of the labs: MNIST (labs 4, 5, 8), Fashion-MNIST (lab 8), the ants-vs-bees photos (lab 6).

Files come from the dpdl data cache (checked by sha256; filled from a mirror or a download), then
torchvision reads them as usual; ``mnist_tensors`` skips PIL and gives the whole split as one tensor.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import datasets, transforms

from dpdl.data.store import fetch, file_path

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HYMENOPTERA_CLASSES",
    "mnist",
    "fashion_mnist",
    "mnist_tensors",
    "fashion_mnist_tensors",
    "hymenoptera",
    "hymenoptera_transform",
    "hymenoptera_photos",
    "Photos",
]

# Mean and standard deviation of all training pixels after ToTensor (values in [0, 1]); use them as
# ``transforms.Normalize(MNIST_MEAN, MNIST_STD)`` and undo with ``x * MNIST_STD + MNIST_MEAN``.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Per-channel (R, G, B) statistics of ImageNet, which torchvision's pretrained networks expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HYMENOPTERA_CLASSES = ("ants", "bees")


def mnist(split: str = "train", transform: Callable | None = None, download: bool = True) -> datasets.MNIST:
    """MNIST handwritten digits as torchvision's ``datasets.MNIST`` (60,000 train / 10,000 test images).

    Items are ``(image, label)``: a 28x28 greyscale PIL image (or ``transform(image)``, e.g.
    ``transforms.ToTensor()`` for a ``(1, 28, 28)`` float tensor in [0, 1]) and an ``int`` in 0-9.
    ``download=False`` only uses files already in the dpdl cache or a mirror.
    """
    return _torchvision_dataset(datasets.MNIST, "mnist", split, transform, download)


def fashion_mnist(
    split: str = "train", transform: Callable | None = None, download: bool = True
) -> datasets.FashionMNIST:
    """Fashion-MNIST (Zalando) as torchvision's ``datasets.FashionMNIST``; same shapes as :func:`mnist`.

    Label ``i`` names ``FASHION_MNIST_CLASSES[i]`` (0 = "T-shirt/top" ... 9 = "Ankle boot").
    """
    return _torchvision_dataset(datasets.FashionMNIST, "fashion_mnist", split, transform, download)


def mnist_tensors(split: str = "train", device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """The whole MNIST split as tensors: ``X`` uint8 ``(N, 28, 28)`` with values 0-255, ``y`` int64 ``(N,)``.

    Read straight from the idx files (no PIL, well under a second) and kept in memory for the rest of
    the process; each call returns fresh copies, so changing them is safe. Feed them to
    :class:`dpdl.data.fast.TensorLoader`, which scales and normalises one batch at a time.
    """
    return _idx_tensors("mnist", "MNIST", split, device)


def fashion_mnist_tensors(split: str = "train", device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST as tensors, like :func:`mnist_tensors`: ``X`` uint8 ``(N, 28, 28)``, ``y`` int64 ``(N,)``."""
    return _idx_tensors("fashion_mnist", "FashionMNIST", split, device)


def hymenoptera(split: str = "train", transform: Callable | None = None, image_size: int = 224) -> datasets.ImageFolder:
    """The ants-vs-bees photos of the transfer-learning tutorial as a torchvision ``ImageFolder`` (lab 6).

    ``train`` holds 244 images (123 ants, 121 bees; the folder's one GIF is not an image ImageFolder
    reads), ``val`` 153 (70 ants, 83 bees). Items are ``(image, label)`` with label 0 = ants, 1 = bees
    (``dataset.classes``); with the default ``transform`` the image is a float tensor
    ``(3, image_size, image_size)`` normalised with the ImageNet statistics, see
    :func:`hymenoptera_transform`.
    """
    split = _check_split(split, ("train", "val"), "hymenoptera")
    root = fetch("hymenoptera") / "hymenoptera_data" / split
    if transform is None:
        transform = hymenoptera_transform(split, image_size)
    return datasets.ImageFolder(root, transform=transform)  # lists the files; decodes each as it is read


def hymenoptera_transform(
    split: str = "train",
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """The standard ImageNet input pipeline, for fine-tuning a pretrained network on PIL images.

    ``train`` augments: a random crop of 8-100 % of the area resized to ``image_size``, a random
    horizontal flip. ``val`` is deterministic: resize the short side to ``image_size * 256 / 224``
    (256 for 224), then crop the centre. Both end with ``ToTensor`` and ``Normalize(mean, std)``, giving
    float tensors ``(3, image_size, image_size)``. The default statistics are ImageNet's, which torchvision's
    models expect; a network trained on other inputs needs its own, e.g. EfficientNet-Lite (pixels scaled
    to [-1, 1]): ``mean=[127 / 255] * 3, std=[128 / 255] * 3``.
    """
    split = _check_split(split, ("train", "val"), "hymenoptera_transform")
    _check_image_size(image_size)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need one number per RGB channel, std > 0; got mean={mean!r}, std={std!r}")
    normalize = transforms.Normalize(list(mean), list(std))
    if split == "train":
        steps = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(_resize_side(image_size)), transforms.CenterCrop(image_size)]
    return transforms.Compose([*steps, transforms.ToTensor(), normalize])


class Photos(torch.utils.data.Dataset):
    """Photos decoded once and kept in memory as small PIL images; items are ``(transform(image), label)``.

    Decoding a JPEG costs more than a small network's step on it, so a ``DataLoader`` over an
    ``ImageFolder`` spends most of each epoch in the JPEG decoder. Here every photo is decoded once;
    the transform still runs per item, so random augmentation stays random. ``images`` is the list of
    PIL images, ``targets`` the labels ``(N,)`` int64, ``classes`` the class names (label ``i`` names
    ``classes[i]``). Build one with :func:`hymenoptera_photos`.
    """

    def __init__(
        self,
        images: Sequence[Image.Image],
        targets: Tensor | Sequence[int],
        classes: Sequence[str],
        transform: Callable | None = None,
    ) -> None:
        targets = torch.as_tensor(targets, dtype=torch.int64)
        if targets.dim() != 1 or len(targets) != len(images):
            raise ValueError(
                f"Photos needs one label per image: {len(images)} images but targets of shape {tuple(targets.shape)}"
            )
        if len(targets) and not 0 <= int(targets.min()) <= int(targets.max()) < len(classes):
            raise ValueError(f"labels must lie in 0..{len(classes) - 1} (one per class of {list(classes)})")
        self.images = list(images)
        self.targets = targets
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[object, int]:
        image = self.images[index]
        return (self.transform(image) if self.transform is not None else image), int(self.targets[index])

    def __repr__(self) -> str:
        counts = ", ".join(f"{count} {name}" for name, count in zip(self.classes, self.class_counts()))
        return f"Photos({len(self)} images: {counts})"

    def class_counts(self) -> list[int]:
        """How many photos each class has, in the order of ``classes``."""
        return self.targets.bincount(minlength=len(self.classes)).tolist()

    def with_transform(self, transform: Callable | None) -> Photos:
        """The same in-memory photos (not copied) with another transform, e.g. augmentation for training."""
        return Photos(self.images, self.targets, self.classes, transform)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Every photo through the transform once: ``X`` ``(N, 3, H, W)`` and ``y`` ``(N,)`` int64.

        Use it with a fixed (validation) transform, to feed :class:`dpdl.data.fast.TensorLoader` or to
        compute features once; with a random transform you would freeze one random draw.
        """
        if self.transform is None:
            raise ValueError(
                "tensors() needs a transform that gives tensors, e.g. photos.with_transform("
                "hymenoptera_transform('val', 224)).tensors()"
            )
        X = torch.stack([self.transform(image) for image in self.images])
        return X, self.targets.clone()


def hymenoptera_photos(split: str = "train", image_size: int = 224, transform: Callable | None = None) -> Photos:
    """The ants-vs-bees photos (like :func:`hymenoptera`), decoded once into memory for ``image_size`` inputs.

    Each photo is decoded shrunk to a short side of ``round(image_size * 256 / 224)`` (JPEG's decoder
    scales by 1/2, 1/4 or 1/8 directly, PIL's ``draft``; then an antialiased resize), which is the size
    :func:`hymenoptera_transform` resizes to before its centre crop, so its crops see the same pixels;
    random crops of the training transform come from this smaller image. Decoding a split takes about
    a second, once, instead of once per epoch. ``transform`` defaults to ``hymenoptera_transform(split,
    image_size)`` (ImageNet statistics; augmenting for ``train``); pass
    ``hymenoptera_transform("val", image_size, mean, std)`` for fixed inputs to extract features.
    """
    split = _check_split(split, ("train", "val"), "hymenoptera_photos")
    _check_image_size(image_size)
    short_side = _resize_side(image_size)
    folder = hymenoptera(split, transform=transform, image_size=image_size)
    resize = transforms.Resize(short_side)
    images = []
    for path, _ in folder.samples:
        with Image.open(path) as image:
            image.draft("RGB", (short_side, short_side))  # JPEG only; the result is at least this large
            images.append(resize(image.convert("RGB")))
    return Photos(images, folder.targets, folder.classes, folder.transform)


# --- helpers -----------------------------------------------------------------------------------


def _check_image_size(image_size: int) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (pixels of the square input); got {image_size!r}")


def _resize_side(image_size: int) -> int:
    """The short side an image is resized to before its centre crop: 256 for 224, as ImageNet models expect."""
    return round(image_size * 256 / 224)


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_TENSOR_CACHE: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}


def _check_split(split: str, allowed: tuple[str, ...], what: str) -> str:
    if split not in allowed:
        choices = " or ".join(repr(s) for s in allowed)
        raise ValueError(f"{what}: split must be {choices}; got {split!r}")
    return split


def _torchvision_dataset(cls, name: str, split: str, transform, download: bool):
    split = _check_split(split, ("train", "test"), name)
    root = fetch(name, download=download)
    # torchvision finds the verified .gz files in <root>/<Class>/raw, so it never goes online; it
    # unpacks them next to the .gz files the first time.
    return cls(str(root), train=split == "train", transform=transform, download=True)


def _idx_tensors(name: str, folder: str, split: str, device) -> tuple[Tensor, Tensor]:
    split = _check_split(split, ("train", "test"), f"{name}_tensors")
    key = (name, split)
    if key not in _TENSOR_CACHE:
        images_file, labels_file = _IDX_FILES[split]
        X = _read_idx(file_path(name, f"{folder}/raw/{images_file}"), ndim=3)
        y = _read_idx(file_path(name, f"{folder}/raw/{labels_file}"), ndim=1).long()
        if len(X) != len(y):
            raise ValueError(f"{name} {split}: {len(X)} images but {len(y)} labels; the cached files disagree")
        _TENSOR_CACHE[key] = (X, y)
    X, y = _TENSOR_CACHE[key]
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cpu":
        return X.clone(), y.clone()
    return X.to(device), y.to(device)


def _read_idx(path: Path, ndim: int) -> Tensor:
    """An idx file (LeCun's MNIST format: big-endian magic ``0x0000_08_<ndim>``, sizes, uint8 data)."""
    data = zlib.decompress(Path(path).read_bytes(), wbits=16 + zlib.MAX_WBITS)  # 16+: gzip header
    magic = int.from_bytes(data[:4], "big")
    if magic != 0x0800 + ndim:
        raise ValueError(f"{path} is not an idx file of {ndim}-D uint8 data (magic number {magic:#x})")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {len(data) - offset} values")
    array = np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)
    return torch.from_numpy(array.copy())

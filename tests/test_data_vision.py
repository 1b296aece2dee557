import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

from dpdl.data import DataUnavailableError
from dpdl.data.vision import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    Photos,
    fashion_mnist,
    fashion_mnist_tensors,
    hymenoptera,
    hymenoptera_photos,
    hymenoptera_transform,
    mnist,
    mnist_tensors,
)

# MNIST's published class counts (LeCun et al.), train and test.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- MNIST and Fashion-MNIST through torchvision ----------------------------------------------------


@pytest.mark.integration
def test_mnist_is_torchvisions_dataset_with_the_published_sizes_and_class_counts(data_env):
    train_set, test_set = mnist("train"), mnist("test")
    assert isinstance(train_set, datasets.MNIST)
    assert (len(train_set), len(test_set)) == (60000, 10000)
    assert torch.bincount(train_set.targets).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(test_set.targets).tolist() == MNIST_TEST_COUNTS
    image, label = train_set[0]
    assert isinstance(image, Image.Image) and image.size == (28, 28) and label == 5  # the famous first 5


@pytest.mark.integration
def test_mnist_applies_the_transform(data_env):
    image, label = mnist("test", transform=transforms.ToTensor())[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and label == 7


@pytest.mark.integration
def test_fashion_mnist_has_six_thousand_of_each_class_and_torchvisions_names(data_env):
    train_set, test_set = fashion_mnist("train"), fashion_mnist("test")
    assert isinstance(train_set, datasets.FashionMNIST)
    assert torch.bincount(train_set.targets).tolist() == [6000] * 10
    assert torch.bincount(test_set.targets).tolist() == [1000] * 10
    assert list(FASHION_MNIST_CLASSES) == datasets.FashionMNIST.classes


@pytest.mark.integration
def test_download_false_reads_the_cache_and_mirror_without_going_online(data_env, monkeypatch):
    monkeypatch.delenv("DPDL_OFFLINE")  # download=False alone must keep it offline
    assert len(mnist("test", download=False)) == 10000
    assert "DPDL_OFFLINE" not in os.environ  # and leave the environment as it was


@pytest.mark.integration
def test_download_false_without_any_copy_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DPDL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DPDL_DATA_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.delenv("DPDL_OFFLINE", raising=False)
    with pytest.raises(DataUnavailableError, match="DPDL_OFFLINE"):
        fashion_mnist("test", download=False)


@pytest.mark.parametrize("loader", [mnist, fashion_mnist, mnist_tensors, fashion_mnist_tensors])
def test_unknown_split_is_an_error_naming_the_choices(loader):
    with pytest.raises(ValueError, match="'train' or 'test'; got 'validation'"):
        loader("validation")


# --- whole splits as tensors --------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_mnist_tensors_are_uint8_images_and_int64_labels_equal_to_torchvisions(data_env, split, n):
    X, y = mnist_tensors(split)
    assert X.shape == (n, 28, 28) and X.dtype == torch.uint8
    assert y.shape == (n,) and y.dtype == torch.int64
    reference = mnist(split)
    assert torch.equal(X, reference.data) and torch.equal(y, reference.targets)
    with_tensor = mnist(split, transform=transforms.ToTensor())
    for i in (0, 1, n // 2, n - 1):  # spot-check what a DataLoader would see
        image, label = with_tensor[i]
        torch.testing.assert_close(image[0], X[i].float() / 255)
        assert label == y[i]


@pytest.mark.integration
def test_fashion_mnist_tensors_equal_torchvisions(data_env):
    X, y = fashion_mnist_tensors("test")
    reference = fashion_mnist("test")
    assert X.dtype == torch.uint8 and torch.equal(X, reference.data) and torch.equal(y, reference.targets)


@pytest.mark.integration
@pytest.mark.parametrize(
    "reader, mean, std",
    [(mnist_tensors, MNIST_MEAN, MNIST_STD), (fashion_mnist_tensors, FASHION_MNIST_MEAN, FASHION_MNIST_STD)],
)
def test_published_mean_and_std_are_those_of_the_training_pixels(data_env, reader, mean, std):
    X, _ = reader("train")
    counts = torch.bincount(X.flatten(), minlength=256).double()  # a histogram is exact and quick
    values = torch.arange(256, dtype=torch.float64) / 255
    pixel_mean = (counts * values).sum() / counts.sum()
    pixel_std = ((counts * (values - pixel_mean) ** 2).sum() / counts.sum()).sqrt()
    assert pixel_mean.item() == pytest.approx(mean, abs=5e-5)
    assert pixel_std.item() == pytest.approx(std, abs=5e-5)


@pytest.mark.integration
def test_mnist_tensors_are_fresh_copies_so_changing_them_is_safe(data_env):
    X, y = mnist_tensors("test")
    X.zero_()
    y.fill_(-1)
    X_again, y_again = mnist_tensors("test")
    assert X_again.sum() > 0 and (y_again >= 0).all()


@pytest.mark.integration
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mnist_tensors_on_the_gpu(data_env):
    X, y = mnist_tensors("test", device="cuda")
    assert X.is_cuda and y.is_cuda and X.dtype == torch.uint8


# --- ants and bees --------------------------------------------------------------------------------


@pytest.mark.integration
def test_hymenoptera_folders_hold_the_tutorials_files(data_env):
    hymenoptera("train")  # fetches the files
    root = Path(os.environ["DPDL_DATA_DIR"]) / "hymenoptera_data"
    counts = {
        f"{split}/{label}": len(list((root / split / label).iterdir()))
        for split in ("train", "val")
        for label in ("ants", "bees")
    }
    assert counts == {"train/ants": 124, "train/bees": 121, "val/ants": 70, "val/bees": 83}


@pytest.mark.integration
def test_hymenoptera_image_folders_count_ants_and_bees_without_the_gif(data_env):
    train_set, val_set = hymenoptera("train"), hymenoptera("val")
    assert isinstance(train_set, datasets.ImageFolder) and train_set.classes == ["ants", "bees"]
    assert torch.bincount(torch.tensor(train_set.targets)).tolist() == [123, 121]  # imageNotFound.gif skipped
    assert torch.bincount(torch.tensor(val_set.targets)).tolist() == [70, 83]


@pytest.mark.integration
@pytest.mark.parametrize("image_size", [224, 128])
def test_hymenoptera_default_transforms_give_normalised_square_tensors(data_env, image_size):
    for split in ("train", "val"):
        image, label = hymenoptera(split, image_size=image_size)[0]
        assert image.shape == (3, image_size, image_size) and image.dtype == torch.float32
        assert label == 0
        assert image.min() < 0 < image.max()  # normalised, not in [0, 1]


@pytest.mark.integration
def test_hymenoptera_val_transform_is_resize_centre_crop_normalise(data_env):
    val_set = hymenoptera("val")
    path, _ = val_set.samples[5]
    with Image.open(path) as image:
        pil = image.convert("RGB")
    resized = pil.resize(_short_side(pil.size, 256), Image.BILINEAR)
    manual = transforms.functional.center_crop(transforms.functional.to_tensor(resized), [224, 224])
    manual = (manual - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(val_set[5][0], manual, atol=0.05, rtol=0)  # PIL vs torchvision antialiasing
    assert torch.equal(val_set[5][0], val_set[5][0])  # deterministic


@pytest.mark.integration
def test_hymenoptera_train_transform_augments_at_random(data_env):
    train_set = hymenoptera("train")
    torch.manual_seed(0)
    first = train_set[0][0]
    assert not torch.equal(first, train_set[0][0])
    torch.manual_seed(0)
    assert torch.equal(first, train_set[0][0])


@pytest.mark.integration
def test_hymenoptera_keeps_a_custom_transform(data_env):
    image, _ = hymenoptera("val", transform=transforms.PILToTensor())[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3


def test_hymenoptera_transform_sizes_scale_with_image_size():
    image = Image.new("RGB", (500, 375), color=(255, 0, 0))
    for split in ("train", "val"):
        assert hymenoptera_transform(split, 96)(image).shape == (3, 96, 96)
    red = hymenoptera_transform("val", 64)(image)[:, 0, 0]
    torch.testing.assert_close(
        red, (torch.tensor([1.0, 0, 0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    )


def test_hymenoptera_transform_takes_another_networks_statistics():
    image = Image.new("RGB", (80, 60), color=(255, 127, 0))
    pixel = hymenoptera_transform("val", 32, mean=[127 / 255] * 3, std=[128 / 255] * 3)(image)[:, 0, 0]
    torch.testing.assert_close(pixel, torch.tensor([128 / 128, 0.0, -127 / 128]))  # (x - 127) / 128
    with pytest.raises(ValueError, match="one number per RGB channel"):
        hymenoptera_transform("val", 32, mean=[0.5], std=[0.5])
    with pytest.raises(ValueError, match="std > 0"):
        hymenoptera_transform("val", 32, std=[0.2, 0.0, 0.2])


@pytest.mark.parametrize(
    "split, image_size, message",
    [("test", 224, "'train' or 'val'"), ("val", 0, "image_size must be an int"), ("val", 224.0, "image_size")],
)
def test_hymenoptera_transform_rejects_bad_arguments(split, image_size, message):
    with pytest.raises(ValueError, match=message):
        hymenoptera_transform(split, image_size)


# --- photos decoded once ---------------------------------------------------------------------------


def _coloured_photos(transform=None) -> Photos:
    images = [Image.new("RGB", (40 + i, 30), color=(40 * i, 0, 0)) for i in range(5)]
    return Photos(images, [0, 1, 1, 0, 1], ["ants", "bees"], transform)


def test_photos_are_a_dataset_of_transformed_images_and_int_labels():
    photos = _coloured_photos(transforms.ToTensor())
    image, label = photos[2]
    assert len(photos) == 5 and label == 1 and isinstance(label, int)
    assert image.shape == (3, 30, 42) and image[0, 0, 0].item() == pytest.approx(80 / 255)
    assert photos.class_counts() == [2, 3] and repr(photos) == "Photos(5 images: 2 ants, 3 bees)"
    untransformed, _ = _coloured_photos()[0]
    assert isinstance(untransformed, Image.Image)


def test_photos_with_transform_shares_the_images_and_keeps_the_original():
    photos = _coloured_photos(transforms.ToTensor())
    grey = photos.with_transform(transforms.Compose([transforms.Grayscale(), transforms.ToTensor()]))
    assert grey.images is not photos.images and all(a is b for a, b in zip(grey.images, photos.images))
    assert grey[0][0].shape[0] == 1 and photos[0][0].shape[0] == 3


def test_photos_tensors_stack_every_transformed_image_with_the_labels():
    photos = _coloured_photos(transforms.Compose([transforms.CenterCrop(20), transforms.ToTensor()]))
    X, y = photos.tensors()
    assert X.shape == (5, 3, 20, 20) and y.tolist() == [0, 1, 1, 0, 1] and y.dtype == torch.int64
    y[0] = 1  # a copy: the dataset's labels do not change
    assert photos.targets[0] == 0
    with pytest.raises(ValueError, match="needs a transform"):
        _coloured_photos().tensors()


@pytest.mark.parametrize(
    "targets, message", [([0, 1], "one label per image"), ([0, 1, 2, 0, 1], r"labels must lie in 0\.\.1")]
)
def test_photos_reject_labels_that_do_not_fit_the_images_or_classes(targets, message):
    images = [Image.new("RGB", (8, 8))] * 5
    with pytest.raises(ValueError, match=message):
        Photos(images, targets, ["ants", "bees"])


@pytest.mark.integration
def test_hymenoptera_photos_hold_imagefolders_labels_at_the_val_resize(data_env):
    folder = hymenoptera("val")
    photos = hymenoptera_photos("val", image_size=112)
    assert photos.classes == folder.classes and photos.targets.tolist() == folder.targets
    assert {min(image.size) for image in photos.images} == {128}  # round(112 * 256 / 224)
    assert all(image.mode == "RGB" for image in photos.images)
    # the default transform is hymenoptera_transform("val", 112): the same inputs as ImageFolder's, up to
    # the JPEG decoder's own down-scaling
    X, y = photos.tensors()
    assert X.shape == (153, 3, 112, 112) and y.bincount().tolist() == [70, 83]
    reference = hymenoptera("val", image_size=112)[7][0]
    assert (X[7] - reference).abs().mean() < 0.05


@pytest.mark.integration
def test_hymenoptera_photos_default_to_the_augmenting_transform_for_train(data_env):
    photos = hymenoptera_photos("train", image_size=64)
    assert len(photos) == 244 and photos.class_counts() == [123, 121]
    torch.manual_seed(0)
    first = photos[0][0]
    assert first.shape == (3, 64, 64) and not torch.equal(first, photos[0][0])
    stats = dict(mean=[127 / 255] * 3, std=[128 / 255] * 3)
    fixed = hymenoptera_photos("train", 64, transform=hymenoptera_transform("val", 64, **stats))
    assert torch.equal(fixed[0][0], fixed[0][0]) and fixed[0][0].min() >= -1 and fixed[0][0].max() <= 1


def test_hymenoptera_photos_check_split_and_size_before_reading_files():
    with pytest.raises(ValueError, match="'train' or 'val'"):
        hymenoptera_photos("test")
    with pytest.raises(ValueError, match="image_size must be an int"):
        hymenoptera_photos("val", image_size=3, transform=transforms.ToTensor())


def _short_side(size: tuple[int, int], short: int) -> tuple[int, int]:
    width, height = size
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def test_idx_reader_rejects_files_that_are_not_idx_or_are_cut_short(tmp_path):
    import gzip

    from dpdl.data.vision import _read_idx

    good = (0x0801).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([7, 8, 9])
    (tmp_path / "good.gz").write_bytes(gzip.compress(good))
    assert _read_idx(tmp_path / "good.gz", ndim=1).tolist() == [7, 8, 9]
    (tmp_path / "images.gz").write_bytes(gzip.compress(good))
    with pytest.raises(ValueError, match="not an idx file of 3-D uint8 data"):
        _read_idx(tmp_path / "images.gz", ndim=3)
    (tmp_path / "short.gz").write_bytes(gzip.compress(good[:-1]))
    with pytest.raises(ValueError, match=r"header says shape \[3\] but the file holds 2 values"):
        _read_idx(tmp_path / "short.gz", ndim=1)

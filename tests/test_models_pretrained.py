import pytest
import torch
from PIL import Image
from torchvision import models

from dpdl.data import DataUnavailableError
from dpdl.models.pretrained_models import PRETRAINED_MODELS, PretrainedModel, imagenet_categories, pretrained
from tests.conftest import MIRROR


@pytest.fixture
def offline_env(data_cache, tmp_path, monkeypatch):
    """An offline dpdl cache and an empty torch hub cache (TORCH_HOME) of the test's own."""
    monkeypatch.setenv("DPDL_DATA_DIR", str(data_cache))
    monkeypatch.setenv("DPDL_DATA_MIRROR", str(MIRROR) if MIRROR else str(tmp_path / "no-mirror"))
    monkeypatch.setenv("DPDL_OFFLINE", "1")  # a test never goes online
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def lite0() -> PretrainedModel:
    return pretrained("efficientnet_lite0")


def test_imagenet_categories_are_the_1000_classes_in_standard_order():
    categories = imagenet_categories()
    assert len(categories) == 1000
    assert categories[:2] == ["tench", "goldfish"] and categories[309] == "bee" and categories[310] == "ant"
    categories.append("changed")
    assert len(imagenet_categories()) == 1000  # a fresh list every time


# --- EfficientNet-Lite0 (weights from pip) -----------------------------------------------------------


def test_efficientnet_lite0_is_the_pretrained_model_in_eval_mode(lite0):
    assert lite0.name == "efficientnet_lite0" and lite0.categories == imagenet_categories()
    assert not lite0.model.training
    assert sum(p.numel() for p in lite0.model.parameters()) == 4_652_008
    assert repr(lite0) == "PretrainedModel('efficientnet_lite0', 4,652,008 parameters, 1000 categories)"
    with torch.no_grad():
        logits = lite0.model(torch.zeros(2, 3, 224, 224))
    assert logits.shape == (2, 1000)


def test_efficientnet_lite0_transform_scales_pixels_to_minus_one_one():
    model = pretrained("efficientnet-lite0")  # the package's spelling works too
    image = Image.new("RGB", (320, 240), color=(0, 255, 127))
    X = model.transform(image)
    assert X.shape == (3, 224, 224)
    torch.testing.assert_close(X[:, 100, 100], torch.tensor([-127 / 128, 1.0, 0.0]))


def test_loading_efficientnet_prints_nothing(capsys):
    pretrained("efficientnet_lite0")
    assert capsys.readouterr().out == ""


@pytest.mark.integration
@pytest.mark.skipif(MIRROR is None, reason="needs the real data mirror (hymenoptera photos)")
@pytest.mark.parametrize(
    "photo, insect", [("val/bees/10870992_eebeeb3a12.jpg", "bee"), ("val/ants/1053149811_f62a3410d3.jpg", "ant")]
)
def test_efficientnet_lite0_recognises_a_real_bee_and_ant(lite0, offline_env, photo, insect):
    from dpdl.data.store import file_path

    with Image.open(file_path("hymenoptera", f"hymenoptera_data/{photo}")) as image:
        (top5,) = lite0.classify(image, k=5)
    assert insect in [category for category, _ in top5]
    assert top5[0][0] == insect  # these two photos are clear: the insect wins outright
    probabilities = [p for _, p in top5]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6


def test_features_are_what_the_last_layer_sees_in_eval_mode(lite0):
    X = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    features = lite0.features(X, batch_size=2)
    assert features.shape == (5, 1280) and features.device.type == "cpu" and not features.requires_grad
    with torch.no_grad():
        pooled = lite0.model.extract_features(X).mean(dim=(2, 3))
        torch.testing.assert_close(features, pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lite0.model._fc(features), lite0.model(X), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lite0.features(X, batch_size=5), features, atol=1e-5, rtol=1e-5)  # batch-independent


def test_features_leave_the_models_mode_and_last_layer_as_they_were(lite0):
    model = lite0.model
    head = model._fc
    X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.train()
    try:
        before = {name: buffer.clone() for name, buffer in model.named_buffers()}
        lite0.features(X)
        assert model.training and model._fc is head and lite0.head_name == "_fc"
        assert all(torch.equal(buffer, before[name]) for name, buffer in model.named_buffers())  # eval: stats unchanged
    finally:
        model.eval()


def test_features_of_a_resnet_are_its_512_pooled_numbers(offline_env):
    offline_env.mkdir(parents=True)
    torch.save(models.resnet18().state_dict(), offline_env / "resnet18-f37072fd.pth")
    resnet = pretrained("resnet18")
    X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    features = resnet.features(X)
    assert resnet.head_name == "fc" and features.shape == (3, 512)
    with torch.no_grad():
        torch.testing.assert_close(resnet.model.fc(features), resnet.model(X), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "X, batch_size, message",
    [
        (torch.zeros(3, 32, 32), 16, r"add the batch dimension"),
        (torch.zeros(2, 1, 32, 32), 16, r"\(N, 3, H, W\)"),
        (torch.zeros(2, 3, 32, 32), 0, "batch_size must be a positive int"),
    ],
)
def test_features_reject_what_is_not_a_batch_of_rgb_images(lite0, X, batch_size, message):
    with pytest.raises(ValueError, match=message):
        lite0.features(X, batch_size=batch_size)


# --- ResNet-18 (weights file from the cache, a mirror or torch hub) ------------------------------------


def test_resnet18_without_weights_anywhere_says_how_to_get_them(offline_env):
    with pytest.raises(DataUnavailableError) as caught:
        pretrained("resnet18")
    message = str(caught.value)
    assert "resnet18-f37072fd.pth" in message and "DPDL_DATA_MIRROR" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(offline_env / "resnet18-f37072fd.pth") in message  # where torch hub would look
    assert "efficientnet_lite0" in message
    assert not (offline_env / "resnet18-f37072fd.pth").exists()


def test_resnet18_uses_weights_already_in_torch_hubs_cache(offline_env):
    state = models.resnet18().state_dict()  # stands in for the real file, which the mirror lacks
    offline_env.mkdir(parents=True)
    torch.save(state, offline_env / "resnet18-f37072fd.pth")
    resnet = pretrained("resnet18")
    assert resnet.name == "resnet18" and not resnet.model.training and len(resnet.categories) == 1000
    assert torch.equal(resnet.model.fc.weight, state["fc.weight"])
    assert resnet.transform(Image.new("RGB", (300, 260))).shape == (3, 224, 224)


def test_resnet18_places_the_cached_file_where_torch_hub_looks(offline_env, tmp_path, monkeypatch):
    import dpdl.models.pretrained_models as module

    state = models.resnet18().state_dict()
    source = tmp_path / "cache" / "weights" / "resnet18-f37072fd.pth"
    source.parent.mkdir(parents=True)
    torch.save(state, source)
    asked = []
    monkeypatch.setattr(module, "file_path", lambda name, relpath: asked.append((name, relpath)) or source)
    resnet = pretrained("resnet18")
    assert asked == [("resnet18_imagenet", "weights/resnet18-f37072fd.pth")]
    placed = offline_env / "resnet18-f37072fd.pth"
    assert placed.exists() and placed.read_bytes() == source.read_bytes()
    assert torch.equal(resnet.model.conv1.weight, state["conv1.weight"])
    pretrained("resnet18")  # the second time torch hub's copy is used
    assert len(asked) == 1


def test_dpdl_models_pretrained_is_the_function_even_after_importing_its_module():
    import dpdl.models
    import dpdl.models.pretrained_models  # the module has its own name, so nothing is rebound

    assert dpdl.models.pretrained("efficientnet_lite0").name == "efficientnet_lite0"
    from dpdl.models import pretrained as from_package

    assert from_package("efficientnet-lite0").name == "efficientnet_lite0"


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown pretrained model 'vgg16'; available: efficientnet_lite0, resnet18"):
        pretrained("vgg16")
    assert PRETRAINED_MODELS == ("efficientnet_lite0", "resnet18")

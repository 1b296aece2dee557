import pytest
import torch

from dpdl.models import SmallUNet, count_parameters
from dpdl.models.unet import time_embedding


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_unet_output_has_the_shape_of_its_input():
    model = SmallUNet()
    x = torch.randn(3, 1, 28, 28)
    assert model(x, torch.rand(3)).shape == (3, 1, 28, 28)


def test_unet_other_sizes_levels_and_channels():
    model = SmallUNet(in_channels=3, channels=(8, 16), image_size=16, time_dim=16)
    assert model(torch.randn(2, 3, 16, 16), torch.rand(2)).shape == (2, 3, 16, 16)


def test_untrained_unet_predicts_zero_so_training_starts_from_a_neutral_guess():
    assert torch.equal(SmallUNet()(torch.randn(2, 1, 28, 28), torch.rand(2)), torch.zeros(2, 1, 28, 28))


def test_unet_output_depends_on_the_time():
    model = SmallUNet()
    torch.nn.init.normal_(model.head[-1].weight)  # the zero-initialised head would hide every difference
    x = torch.randn(1, 1, 28, 28)
    assert not torch.allclose(model(x, torch.tensor([0.1])), model(x, torch.tensor([0.9])))


def test_unet_images_in_a_batch_do_not_affect_each_other():
    model = SmallUNet()
    torch.nn.init.normal_(model.head[-1].weight)
    x, t = torch.randn(4, 1, 28, 28), torch.rand(4)
    torch.testing.assert_close(model(x, t)[:1], model(x[:1], t[:1]), atol=1e-5, rtol=1e-5)


def test_unet_accepts_one_time_for_the_whole_batch():
    model = SmallUNet()
    torch.nn.init.normal_(model.head[-1].weight)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x, 0.5), model(x, torch.full((2,), 0.5)))
    torch.testing.assert_close(model(x, torch.full((2, 1), 0.5)), model(x, torch.full((2,), 0.5)))


def test_unet_gradients_reach_every_parameter():
    model = SmallUNet()
    torch.nn.init.normal_(model.head[-1].weight)
    model(torch.randn(2, 1, 28, 28), torch.rand(2)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_default_unet_is_small_enough_for_a_cpu():
    assert 100_000 < count_parameters(SmallUNet()) < 300_000


@pytest.mark.parametrize(
    ("x", "t", "match"),
    [
        (torch.randn(1, 28, 28), torch.rand(1), r"unsqueeze\(0\)"),
        (torch.randn(2, 3, 28, 28), torch.rand(2), "in_channels=3"),
        (torch.randn(2, 1, 32, 32), torch.rand(2), r"image_size|Resize"),
        (torch.randn(2, 1, 28, 28), torch.rand(3), r"one time per image, shape \(2,\)"),
        (torch.randn(2, 1, 28, 28), torch.tensor([5, 7]), "t_index / num_steps"),
    ],
)
def test_unet_rejects_wrong_inputs_saying_how_to_fix_them(x, t, match):
    with pytest.raises(ValueError, match=match):
        SmallUNet()(x, t)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 30}, "multiple of 4"),
        ({"channels": (16,)}, "at least two levels"),
        ({"channels": (16, 30)}, "multiple of 4"),
        ({"time_dim": 7}, "even"),
        ({"in_channels": 0}, "positive int"),
    ],
)
def test_unet_rejects_bad_sizes_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallUNet(**kwargs)


def test_time_embedding_shape_and_range():
    emb = time_embedding(torch.tensor([0.0, 0.5, 1.0]), 16)
    assert emb.shape == (3, 16)
    assert emb.abs().max() <= 1
    assert not torch.allclose(emb[0], emb[1])


def test_time_embedding_tells_apart_neighbouring_ddpm_steps():
    emb = time_embedding(torch.tensor([0.500, 0.501]), 64)
    assert (emb[0] - emb[1]).norm() > 0.5

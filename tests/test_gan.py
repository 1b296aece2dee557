import math

import pytest
import torch

import dpdl.data
from dpdl import gan
from dpdl.models import DCGANGenerator


def fake_mnist(n=256):
    """Stand-in for MNIST (uint8 digits and labels), so the recipe can be tested without the data mirror."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def test_discriminator_loss_is_two_log_two_when_undecided_and_small_when_right():
    undecided = torch.zeros(8)
    assert gan.discriminator_loss(undecided, undecided).item() == pytest.approx(2 * math.log(2))
    assert gan.discriminator_loss(torch.full((8,), 10.0), torch.full((8,), -10.0)) < 1e-3
    assert gan.discriminator_loss(torch.full((8,), -10.0), torch.full((8,), 10.0)) > 19


def test_generator_loss_is_non_saturating_where_the_discriminator_rejects_the_fakes():
    assert gan.generator_loss(torch.zeros(4)).item() == pytest.approx(math.log(2))
    fake_logits = torch.full((1,), -5.0, requires_grad=True)
    (grad,) = torch.autograd.grad(gan.generator_loss(fake_logits), fake_logits)
    assert grad.item() < -0.9  # -log D keeps a strong gradient; log(1 - D) would give about -0.007


def test_build_follows_the_recipe():
    model = gan.build(dict(gan.RECIPE, noise_dim=8, generator_width=16))
    assert isinstance(model, DCGANGenerator) and model.noise_dim == 8 and model.width == 16


def test_train_updates_the_generator_on_the_models_device_and_leaves_it_in_eval_mode(monkeypatch):
    monkeypatch.setattr(dpdl.data, "mnist_tensors", lambda split: fake_mnist())
    recipe = dict(gan.RECIPE, num_train=128, epochs=2, batch_size=32)
    model = gan.build(recipe)
    before = [p.detach().clone() for p in model.parameters()]
    accuracies = gan.train(model, recipe)
    assert len(accuracies) == 2 * 128 // 32 and all(0 <= a <= 1 for a in accuracies)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not model.training


def test_train_with_the_same_recipe_gives_the_same_weights(monkeypatch):
    monkeypatch.setattr(dpdl.data, "mnist_tensors", lambda split: fake_mnist())
    recipe = dict(gan.RECIPE, num_train=64, epochs=1, batch_size=32)
    first = gan.build(recipe)
    gan.train(first, recipe)
    torch.manual_seed(123)  # the global RNG's state before building and training must not matter
    state = torch.get_rng_state()
    second = gan.build(recipe)
    gan.train(second, recipe)
    assert torch.equal(torch.get_rng_state(), state), "build and train must leave the global RNG alone"
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_train_names_a_missing_recipe_setting():
    with pytest.raises(ValueError, match=r"lacks \['betas'\]"):
        gan.train(gan.build(), {k: v for k, v in gan.RECIPE.items() if k != "betas"})


def test_sample_gives_repeatable_images_in_zero_one_and_keeps_the_mode():
    torch.manual_seed(0)
    model = gan.build()
    model.train()
    images = gan.sample(model, 5, generator=torch.Generator().manual_seed(1))
    again = gan.sample(model, 5, generator=torch.Generator().manual_seed(1))
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, again)
    assert model.training
    # eval mode: one sample does not depend on the rest of its batch
    torch.testing.assert_close(gan.sample(model, 2, generator=torch.Generator().manual_seed(1)), images[:2])


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_sample_rejects_a_count_that_is_not_a_positive_int(n):
    with pytest.raises(ValueError, match="positive int"):
        gan.sample(gan.build(), n)

import pytest
import torch

import dpdl.data
from dpdl import vae
from dpdl.models import VAE


def fake_mnist(n=256):
    """Two "digits" (ink on the left or on the right half), so the recipe can be tested without the data mirror."""
    X = torch.zeros(n, 28, 28, dtype=torch.uint8)
    y = torch.arange(n) % 2
    X[y == 0, 4:24, 4:12] = 255
    X[y == 1, 4:24, 16:24] = 255
    return X, y


def test_build_follows_the_recipe():
    model = vae.build(dict(vae.RECIPE, latent_dim=3, hidden=20))
    assert isinstance(model, VAE) and model.latent_dim == 3 and model.fc_mu.in_features == 20


def test_train_lowers_the_negative_elbo_and_leaves_the_model_in_eval_mode(monkeypatch):
    monkeypatch.setattr(dpdl.data, "mnist_tensors", lambda split: fake_mnist())
    recipe = dict(vae.RECIPE, num_train=256, epochs=6, batch_size=32, hidden=64, latent_dim=2, lr=3e-3)
    model = vae.build(recipe)
    losses = vae.train(model, recipe)
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0]
    assert not model.training


def test_train_names_a_missing_recipe_setting():
    with pytest.raises(ValueError, match=r"lacks \['epochs'\]"):
        vae.train(vae.build(), {k: v for k, v in vae.RECIPE.items() if k != "epochs"})


def test_sample_decodes_prior_draws_to_repeatable_mean_images():
    torch.manual_seed(0)
    model = vae.build()
    images = vae.sample(model, 6, generator=torch.Generator().manual_seed(2))
    assert images.shape == (6, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, vae.sample(model, 6, generator=torch.Generator().manual_seed(2)))
    z = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(images, torch.sigmoid(model.decode(z)))


def test_sample_rejects_a_count_that_is_not_a_positive_int():
    with pytest.raises(ValueError, match="positive int"):
        vae.sample(vae.build(), 0)

import sys
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dpdl.models
from dpdl.losses import vae_loss
from dpdl.models import VAE, BaselineMLP, BetterCNN, MLPAutoencoder, SimpleCNN, count_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def mnist_batch(batch_size=4):
    return torch.rand(batch_size, 1, 28, 28)


# BaselineMLP


def test_baseline_mlp_gives_one_logit_per_class_for_image_and_flat_batches():
    model = BaselineMLP()
    X = mnist_batch()
    logits = model(X)
    assert logits.shape == (4, 10)
    torch.testing.assert_close(model(X.view(4, 784)), logits)


def test_baseline_mlp_has_784_784_10_parameters():
    assert count_parameters(BaselineMLP()) == 784 * 784 + 784 + 784 * 10 + 10


def test_baseline_mlp_sizes_follow_its_arguments():
    model = BaselineMLP(in_features=12, hidden=5, num_classes=3)
    assert model(torch.rand(2, 3, 4)).shape == (2, 3)
    assert count_parameters(model) == 12 * 5 + 5 + 5 * 3 + 3


def test_baseline_mlp_rejects_colour_images_saying_what_it_expected():
    with pytest.raises(ValueError, match=r"784 numbers per example.*\(B, 1, 28, 28\).*Grayscale"):
        BaselineMLP()(torch.rand(2, 3, 28, 28))


def test_baseline_mlp_asks_for_a_batch_dimension():
    with pytest.raises(ValueError, match="unsqueeze"):
        BaselineMLP()(torch.rand(784))


def test_baseline_mlp_with_non_square_in_features_names_the_flat_shape():
    with pytest.raises(ValueError, match=r"e.g. \(B, 12\); got shape \(2, 10\)"):
        BaselineMLP(in_features=12)(torch.rand(2, 10))


def test_baseline_mlp_wrong_size_suggests_in_features():
    with pytest.raises(ValueError, match="in_features=1024"):
        BaselineMLP()(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_models_reject_non_positive_sizes(bad):
    with pytest.raises(ValueError, match="positive int"):
        BaselineMLP(hidden=bad)


# SimpleCNN and BetterCNN


def test_simple_cnn_gives_logits_for_mnist():
    model = SimpleCNN()
    assert model(mnist_batch()).shape == (4, 10)
    assert model.classifier[1].in_features == 32 * 13 * 13  # 28 -conv3-> 26 -pool-> 13


def test_simple_cnn_handles_colour_images_of_other_sizes():
    model = SimpleCNN(in_channels=3, num_classes=5, input_size=32)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_better_cnn_has_the_book_architecture():
    model = BetterCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(30, (5, 5)), (15, (3, 3))]
    assert [m.kernel_size for m in model.modules() if isinstance(m, nn.MaxPool2d)] == [2, 2]
    assert [lin.out_features for lin in linears] == [128, 50, 10]
    assert [d.p for d in dropouts] == [0.2]


@pytest.mark.parametrize(
    ("in_channels", "input_size", "flat"),
    [(1, 28, 15 * 5 * 5), (3, 28, 15 * 5 * 5), (3, 64, 15 * 14 * 14)],
)
def test_better_cnn_computes_its_flatten_size_from_input_size(in_channels, input_size, flat):
    model = BetterCNN(in_channels=in_channels, num_classes=2, input_size=input_size)
    assert model.classifier[1].in_features == flat
    assert model(torch.rand(3, in_channels, input_size, input_size)).shape == (3, 2)


@settings(max_examples=10, deadline=None)
@given(side=st.integers(12, 64), channels=st.sampled_from([1, 3]), classes=st.integers(1, 12))
def test_better_cnn_works_for_any_square_size_from_12(side, channels, classes):
    model = BetterCNN(in_channels=channels, num_classes=classes, input_size=side)
    assert model(torch.rand(2, channels, side, side)).shape == (2, classes)


def test_better_cnn_accepts_rectangular_input_size():
    model = BetterCNN(input_size=(28, 40))
    assert model(torch.rand(2, 1, 28, 40)).shape == (2, 10)


@pytest.mark.parametrize("model_class", [SimpleCNN, BetterCNN])
def test_cnns_refuse_images_too_small_for_their_layers(model_class):
    with pytest.raises(ValueError, match="too small"):
        model_class(input_size=3)


@pytest.mark.parametrize("bad", ["28", 0, (28, 28, 3), 28.0])
def test_cnns_reject_malformed_input_size(bad):
    with pytest.raises(ValueError, match="input_size must be"):
        BetterCNN(input_size=bad)


def test_better_cnn_dropout_is_random_in_training_and_off_in_eval():
    model = BetterCNN()
    X = mnist_batch()
    assert not torch.equal(model(X), model(X))
    model.eval()
    torch.testing.assert_close(model(X), model(X), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 3, 28, 28), r"expects images of shape \(B, 1, 28, 28\).*in_channels=3"),
        ((2, 1, 64, 64), r"input_size=28\).*input_size=64"),
        ((2, 1, 28, 32), r"input_size=\(28, 32\)"),
        ((2, 784), r"x.view\(-1, 1, 28, 28\)"),
        ((1, 28, 28), r"unsqueeze\(0\)"),
        ((28,), r"batch of images"),
    ],
)
@pytest.mark.parametrize("model_class", [SimpleCNN, BetterCNN])
def test_cnns_say_which_shape_they_expected(model_class, shape, message):
    with pytest.raises(ValueError, match=message):
        model_class()(torch.rand(shape))


# MLPAutoencoder


def test_autoencoder_encodes_to_latent_and_decodes_to_images():
    model = MLPAutoencoder()
    X = mnist_batch()
    z = model.encode(X)
    assert z.shape == (4, 64)
    assert model.decode(z).shape == (4, 1, 28, 28)
    assert model(X).shape == X.shape
    assert model(X.view(4, 784)).shape == (4, 784)


def test_autoencoder_decodes_to_a_custom_image_shape():
    model = MLPAutoencoder(in_features=12, hidden=8, latent_dim=3, image_shape=(3, 4))
    assert model.decode(torch.rand(5, 3)).shape == (5, 3, 4)
    assert MLPAutoencoder(in_features=12, hidden=8, latent_dim=3).decode(torch.rand(5, 3)).shape == (5, 12)


def test_autoencoder_logits_train_with_bce_with_logits():
    model = MLPAutoencoder(in_features=16, hidden=16, latent_dim=4, image_shape=(1, 4, 4))
    X = (torch.rand(16, 1, 4, 4) > 0.5).float()
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(60):  # plain gradient descent: building a torch.optim optimizer costs seconds on first use
        model.zero_grad()
        loss = loss_fn(model(X), X)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 2.0 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


@pytest.mark.parametrize("bad", [(1, 28, 27), (0, 784), ()])
def test_autoencoder_rejects_image_shape_that_does_not_hold_in_features(bad):
    with pytest.raises(ValueError, match="image_shape"):
        MLPAutoencoder(image_shape=bad)


@pytest.mark.parametrize("model_class", [MLPAutoencoder, VAE])
def test_autoencoders_say_which_code_shape_decode_expected(model_class):
    model = model_class(latent_dim=2)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model.decode(torch.rand(2))
    with pytest.raises(ValueError, match=r"\(B, latent_dim=2\)"):
        model.decode(torch.rand(4, 3))


@pytest.mark.parametrize("model_class", [MLPAutoencoder, VAE])
def test_autoencoders_reject_colour_mnist(model_class):
    with pytest.raises(ValueError, match=model_class.__name__ + r"\(in_features=784\)"):
        model_class()(torch.rand(2, 3, 28, 28))


# VAE


def test_vae_encodes_to_mean_and_log_variance_and_reconstructs_like_the_input():
    model = VAE()
    X = mnist_batch()
    mu, log_var = model.encode(X)
    assert mu.shape == log_var.shape == (4, 2)
    x_hat, mu_f, log_var_f = model(X)
    assert x_hat.shape == X.shape
    torch.testing.assert_close(mu_f, mu)
    torch.testing.assert_close(log_var_f, log_var)
    assert model.decode(mu).shape == (4, 1, 28, 28)


def test_vae_eval_forward_is_deterministic_and_decodes_the_mean():
    model = VAE().eval()
    X = mnist_batch()
    x_hat_1, mu, _ = model(X)
    x_hat_2, _, _ = model(X)
    torch.testing.assert_close(x_hat_1, x_hat_2, rtol=0, atol=0)
    torch.testing.assert_close(x_hat_1, model.decode(mu))


def test_vae_train_forward_decodes_a_reparameterised_sample():
    model = VAE().train()
    X = mnist_batch()
    x_hat_1, mu, log_var = model(X)
    x_hat_2, _, _ = model(X)
    assert not torch.allclose(x_hat_1, x_hat_2)
    torch.manual_seed(123)
    x_hat, _, _ = model(X)
    torch.manual_seed(123)
    eps = torch.randn(mu.shape)
    torch.testing.assert_close(x_hat, model.decode(mu + torch.exp(0.5 * log_var) * eps))


def test_vae_gradient_reaches_the_log_variance_head_through_the_sample():
    model = VAE().train()
    X = mnist_batch()
    x_hat, _, _ = model(X)
    x_hat.sum().backward()  # the reconstruction alone: only the sample links it to log_var
    assert model.fc_log_var.weight.grad is not None
    assert model.fc_log_var.weight.grad.abs().sum() > 0


def test_vae_output_fits_dpdl_vae_loss():
    model = VAE()
    X = mnist_batch()
    x_hat, mu, log_var = model(X)
    loss = vae_loss(x_hat, X, mu, log_var)
    assert loss.dim() == 0 and torch.isfinite(loss)


# count_parameters and the lazy pretrained


def test_count_parameters_ignores_frozen_layers():
    model = BaselineMLP()
    model.fc1.requires_grad_(False)
    assert count_parameters(model) == 784 * 10 + 10


def test_count_parameters_needs_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters([torch.zeros(3)])


@pytest.fixture
def no_bound_pretrained(monkeypatch):
    """Forget any ``pretrained`` bound on dpdl.models, restored after the test."""
    namespace = vars(dpdl.models)
    monkeypatch.setitem(namespace, "pretrained", None)
    monkeypatch.delitem(namespace, "pretrained")


def test_pretrained_is_imported_on_first_use_and_bound_as_the_function(monkeypatch, no_bound_pretrained):
    fake = types.ModuleType("dpdl.models.pretrained_models")

    def pretrained(name):
        return f"model {name}"

    fake.pretrained = pretrained
    monkeypatch.setitem(sys.modules, dpdl.models._PRETRAINED_MODULE, fake)
    assert dpdl.models.pretrained is pretrained
    assert vars(dpdl.models)["pretrained"] is pretrained
    from dpdl.models import pretrained as imported

    assert imported("x") == "model x"


def test_missing_pretrained_module_is_a_clear_attribute_error(monkeypatch, no_bound_pretrained):
    monkeypatch.setitem(sys.modules, dpdl.models._PRETRAINED_MODULE, None)  # import of it fails
    with pytest.raises(AttributeError, match="dpdl.models.pretrained is not available"):
        _ = dpdl.models.pretrained
    assert "pretrained" in dir(dpdl.models)


def test_a_missing_dependency_of_pretrained_keeps_its_own_error(monkeypatch, no_bound_pretrained):
    def import_module(name):
        raise ModuleNotFoundError("No module named 'efficientnet_lite_pytorch'", name="efficientnet_lite_pytorch")

    monkeypatch.setattr(dpdl.models.importlib, "import_module", import_module)
    with pytest.raises(ModuleNotFoundError, match="efficientnet_lite_pytorch"):
        _ = dpdl.models.pretrained


def test_unknown_attribute_of_dpdl_models_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'ResNet'"):
        _ = dpdl.models.ResNet

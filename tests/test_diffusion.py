import math

import pytest
import torch
from torch import nn

from dpdl import diffusion
from dpdl.models import SmallUNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class ExactVelocity(nn.Module):
    """The ideal flow-matching network when every image is the same ``target``: v(x, t) = (x - target) / t."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return (x - self.target) / t.view(-1, 1, 1, 1)


# flow matching: schedule and forward noising


def test_schedule_runs_from_data_to_noise():
    alpha, sigma = diffusion.alpha_sigma(torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.75, 0.0]))
    torch.testing.assert_close(sigma, torch.tensor([0.0, 0.25, 1.0]))


def test_signal_to_noise_falls_from_infinity_to_zero():
    snr = diffusion.signal_to_noise(torch.tensor([0.0, 0.5, 0.75, 1.0]))
    assert math.isinf(snr[0]) and snr[1] == 1 and abs(snr[2] - 1 / 9) < 1e-6 and snr[3] == 0
    t = torch.linspace(0.01, 0.99, 50)
    assert (diffusion.signal_to_noise(t).diff() < 0).all()


def test_schedule_rejects_times_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        diffusion.alpha_sigma(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="divide step indices"):
        diffusion.alpha_sigma(torch.tensor([3, 4]))


def test_add_noise_interpolates_each_image_at_its_own_time():
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    x_t = diffusion.add_noise(x0, torch.tensor([0.0, 0.5, 1.0]), noise)
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[1], (x0[1] + noise[1]) / 2)
    torch.testing.assert_close(x_t[2], noise[2])


def test_velocity_is_the_time_derivative_of_the_path():
    x0, noise = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([0.3, 0.6])
    h = 1e-3
    finite_difference = (diffusion.add_noise(x0, t + h, noise) - diffusion.add_noise(x0, t - h, noise)) / (2 * h)
    torch.testing.assert_close(finite_difference, diffusion.velocity_target(x0, noise), atol=1e-3, rtol=1e-3)


def test_add_noise_names_mismatched_shapes():
    with pytest.raises(ValueError, match="one time per image"):
        diffusion.add_noise(torch.randn(2, 1, 4, 4), torch.rand(3), torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="one shape"):
        diffusion.add_noise(torch.randn(2, 1, 4, 4), torch.rand(2), torch.randn(2, 1, 4, 5))


# flow matching: loss and sampler


def test_loss_is_zero_for_the_exact_velocity_and_positive_for_zero():
    target = torch.randn(1, 1, 28, 28)
    x0 = target.expand(8, 1, 28, 28)
    generator = torch.Generator().manual_seed(0)
    exact = diffusion.flow_matching_loss(ExactVelocity(target), x0, generator=generator)
    assert exact < 1e-6
    # predicting 0 costs E|eps - x0|^2 per pixel = 1 + mean x0^2
    zero = diffusion.flow_matching_loss(SmallUNet(), torch.zeros(64, 1, 28, 28), generator=generator)
    assert abs(zero.item() - 1) < 0.02


def test_loss_is_repeatable_with_a_generator_and_differentiable():
    model = SmallUNet()
    nn.init.normal_(model.head[-1].weight, std=0.01)
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    first = diffusion.flow_matching_loss(model, x0, generator=torch.Generator().manual_seed(3))
    second = diffusion.flow_matching_loss(model, x0, generator=torch.Generator().manual_seed(3))
    assert first.item() == second.item()
    first.backward()
    assert model.head[-1].weight.grad.abs().sum() > 0


def test_euler_sampler_with_the_exact_velocity_lands_on_the_data():
    target = torch.rand(1, 1, 28, 28) * 2 - 1
    images = diffusion.euler_sample(ExactVelocity(target), torch.randn(5, 1, 28, 28), steps=4)
    torch.testing.assert_close(images, target.expand(5, 1, 28, 28), atol=1e-5, rtol=1e-5)


def test_euler_trajectory_goes_from_noise_to_images_in_steps_plus_one_states():
    noise = torch.randn(2, 1, 28, 28)
    states = diffusion.euler_sample(ExactVelocity(torch.zeros(1, 1, 28, 28)), noise, steps=5, trajectory=True)
    assert len(states) == 6
    torch.testing.assert_close(states[0], noise)
    norms = [s.norm().item() for s in states]
    assert norms == sorted(norms, reverse=True)  # towards the all-zero image, straight along the line


def test_sampler_rejects_a_bad_number_of_steps():
    with pytest.raises(ValueError, match="positive int"):
        diffusion.euler_sample(SmallUNet(), torch.randn(1, 1, 28, 28), steps=0)


def test_sample_gives_n_images_in_the_unit_range_repeatably():
    model = SmallUNet()
    nn.init.normal_(model.head[-1].weight, std=0.1)
    first = diffusion.sample(model, 3, generator=torch.Generator().manual_seed(0), steps=2, batch_size=2)
    second = diffusion.sample(model, 3, generator=torch.Generator().manual_seed(0), steps=2)
    assert first.shape == (3, 1, 28, 28)
    assert 0 <= first.min() and first.max() <= 1
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)
    assert model.training  # sample restores the mode it found
    with pytest.raises(ValueError, match="positive int"):
        diffusion.sample(model, 0)


# DDPM


def test_ddpm_schedule_destroys_the_signal():
    alpha_bars = diffusion.ddpm_alpha_bars()
    assert len(alpha_bars) == 1000 and (alpha_bars.diff() < 0).all()
    assert alpha_bars[0] > 0.9998 and alpha_bars[-1] < 1e-4


def test_ddpm_noising_keeps_unit_variance():
    alpha_bars = diffusion.ddpm_alpha_bars()
    x0, noise = torch.randn(4000, 1, 2, 2), torch.randn(4000, 1, 2, 2)
    x_t = diffusion.ddpm_add_noise(x0, torch.full((4000,), 300), noise, alpha_bars)
    assert abs(x_t.var().item() - 1) < 0.05


def test_ddpm_sampler_with_the_exact_noise_predictor_lands_on_the_data():
    alpha_bars = diffusion.ddpm_alpha_bars(100)
    target = torch.rand(1, 1, 8, 8) * 2 - 1

    class ExactNoise(nn.Module):
        def forward(self, x, t):
            alpha_bar = alpha_bars[(t * 100).round().long() - 1].view(-1, 1, 1, 1)
            return (x - alpha_bar.sqrt() * target) / (1 - alpha_bar).sqrt()

    for steps in (100, 10):
        images = diffusion.ddpm_sample(ExactNoise(), torch.randn(3, 1, 8, 8), alpha_bars, steps)
        torch.testing.assert_close(images, target.expand(3, 1, 8, 8), atol=1e-3, rtol=1e-3)


def test_ddpm_loss_runs_and_is_about_one_for_an_untrained_model():
    loss = diffusion.ddpm_loss(SmallUNet(), torch.zeros(16, 1, 28, 28), diffusion.ddpm_alpha_bars())
    assert abs(loss.item() - 1) < 0.1


# the recipe


def test_build_gives_the_recipe_unet():
    model = diffusion.build()
    assert isinstance(model, SmallUNet) and model.channels == tuple(diffusion.RECIPE["channels"])


def test_recipe_is_json_serialisable_for_its_hash():
    import json

    json.dumps(diffusion.RECIPE)


def test_train_runs_the_given_loss_and_callback_then_loads_the_average(monkeypatch):
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    monkeypatch.setattr("dpdl.data.mnist_tensors", lambda split: (images, torch.zeros(40, dtype=torch.long)))
    recipe = dict(diffusion.RECIPE, num_train=40, num_steps=6, batch_size=16, ema_decay=0.5, channels=(8, 8))
    model = diffusion.build(recipe)
    seen_batches, seen_steps = [], []

    def loss_fn(model, x0):
        seen_batches.append(x0)
        return diffusion.flow_matching_loss(model, x0)

    losses = diffusion.train(
        model, recipe, loss_fn=loss_fn, callback=lambda step, m: seen_steps.append(step), callback_every=3
    )
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert seen_steps == [0, 3, 6]
    assert all(x.shape == (16, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 for x in seen_batches)
    assert not model.training
    assert model.head[-1].weight.abs().sum() > 0  # trained away from the zero initialisation


def test_to_unit_range_clips_the_overshoot():
    torch.testing.assert_close(diffusion.to_unit_range(torch.tensor([-1.5, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))

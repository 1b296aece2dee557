import pytest
import torch

from dpdl.models import DCGANDiscriminator, DCGANGenerator, count_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_generator_turns_noise_into_digits_in_minus_one_to_one():
    generator = DCGANGenerator(noise_dim=8, width=16)
    images = generator(torch.randn(5, 8))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_discriminator_gives_one_logit_per_image():
    logits = DCGANDiscriminator(width=8)(torch.rand(6, 1, 28, 28) * 2 - 1)
    assert logits.shape == (6,)


def test_lab_8_sizes_have_the_parameter_counts_the_gan_notebook_prints():
    assert count_parameters(DCGANGenerator()) == 63_377
    assert count_parameters(DCGANDiscriminator()) == 10_129


def test_generator_names_the_noise_shape_it_expects():
    with pytest.raises(ValueError, match=r"noise_dim=32.*unsqueeze"):
        DCGANGenerator()(torch.randn(32))
    with pytest.raises(ValueError, match=r"\(B, noise_dim=32\)"):
        DCGANGenerator()(torch.randn(4, 16))


def test_discriminator_names_the_image_shape_it_expects():
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        DCGANDiscriminator()(torch.rand(2, 784))


@pytest.mark.parametrize("kwargs", [{"noise_dim": 0}, {"width": 7}, {"width": 2.0}])
def test_generator_rejects_sizes_it_cannot_build(kwargs):
    with pytest.raises(ValueError, match="DCGANGenerator"):
        DCGANGenerator(**kwargs)

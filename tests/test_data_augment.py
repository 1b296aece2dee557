import pytest
import torch
import torch.nn.functional as F

from dpdl.data.augment import (
    affine,
    compose,
    gaussian_noise,
    random_affine,
    random_erasing,
    random_resized_crop,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(B=4, C=1, H=8, W=8, seed=0):
    return torch.rand(B, C, H, W, generator=gen(seed))


def no_change(B):
    return torch.zeros(B), torch.zeros(B, 2), torch.ones(B)


# --- affine: exact against rot90, roll and the identity ------------------------------------------


def test_affine_with_no_change_returns_every_pixel():
    X = images(C=3, H=7, W=9)
    torch.testing.assert_close(affine(X, *no_change(4)), X, atol=1e-6, rtol=0)


def test_affine_by_90_degrees_turns_the_image_counter_clockwise_as_displayed():
    X = images(B=2, H=6, W=6)
    angle = torch.full((2,), 90.0)
    torch.testing.assert_close(
        affine(X, angle, torch.zeros(2, 2), torch.ones(2)), torch.rot90(X, 1, dims=(2, 3)), atol=1e-5, rtol=0
    )
    # the top-left pixel goes to the bottom-left corner
    X = torch.zeros(1, 1, 4, 4)
    X[0, 0, 0, 0] = 1
    turned = affine(X, torch.tensor([90.0]), torch.zeros(1, 2), torch.ones(1))
    assert turned[0, 0, 3, 0] == pytest.approx(1, abs=1e-5)


def test_affine_shift_by_one_pixel_right_and_two_down_moves_the_content_and_fills_zeros():
    X = images(B=1, H=8, W=10)
    shifted = affine(X, torch.zeros(1), torch.tensor([[1 / 10, 2 / 8]]), torch.ones(1))
    expected = torch.zeros_like(X)
    expected[..., 2:, 1:] = X[..., :-2, :-1]
    torch.testing.assert_close(shifted, expected, atol=1e-5, rtol=0)


def test_affine_scale_two_enlarges_about_the_centre():
    X = torch.zeros(1, 1, 8, 8)
    X[..., 3:5, 3:5] = 1  # a 2x2 square at the centre
    enlarged = affine(X, torch.zeros(1), torch.zeros(1, 2), torch.tensor([2.0]))
    assert enlarged[..., 2:6, 2:6].min() > 0.5  # now 4x4, its edge blurred by a pixel (bilinear)
    border = torch.ones(8, 8, dtype=torch.bool)
    border[1:7, 1:7] = False
    assert enlarged[0, 0][border].abs().max() < 1e-6
    assert enlarged.sum().item() == pytest.approx(4 * X.sum().item(), rel=0.05)


def test_affine_draws_nothing_and_treats_each_image_on_its_own():
    X = images(B=3)
    angle, translate, scale = torch.tensor([0.0, 90.0, 0.0]), torch.zeros(3, 2), torch.ones(3)
    out = affine(X, angle, translate, scale)
    torch.testing.assert_close(out[[0, 2]], X[[0, 2]], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(X[1], 1, dims=(1, 2)), atol=1e-5, rtol=0)


def test_affine_keeps_gradients_and_dtype():
    X = images(B=2).double().requires_grad_(True)
    out = affine(X, torch.tensor([10.0, -5.0]), torch.full((2, 2), 0.05), torch.tensor([1.1, 0.9]))
    assert out.dtype == torch.float64
    out.sum().backward()
    assert X.grad is not None and X.grad.abs().sum() > 0


def test_affine_rejects_per_image_values_of_the_wrong_shape_and_non_positive_scale():
    X = images(B=2)
    with pytest.raises(ValueError, match=r"angle must have shape \(2,\)"):
        affine(X, torch.zeros(3), torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="scale must be positive"):
        affine(X, torch.zeros(2), torch.zeros(2, 2), torch.tensor([1.0, 0.0]))


# --- random augmentations: shapes, ranges, per-image draws, seeds --------------------------------

RANDOM = [
    lambda X, g: random_affine(X, generator=g),
    lambda X, g: random_resized_crop(X, generator=g),
    lambda X, g: gaussian_noise(X, 0.1, generator=g),
    lambda X, g: random_erasing(X, p=1.0, generator=g),
]


@pytest.mark.parametrize("augmentation", RANDOM)
def test_random_augmentations_keep_the_shape_and_repeat_with_the_same_seed(augmentation):
    X = images(B=5, C=3, H=12, W=10)
    out = augmentation(X, gen(1))
    assert out.shape == X.shape and out.dtype == X.dtype
    torch.testing.assert_close(augmentation(X, gen(1)), out)
    assert not torch.allclose(augmentation(X, gen(2)), out)
    assert torch.equal(X, images(B=5, C=3, H=12, W=10)), "the input must not be changed in place"


@pytest.mark.parametrize("augmentation", RANDOM)
def test_random_augmentations_draw_each_image_its_own_way(augmentation):
    X = images(B=1, H=12, W=12).expand(6, 1, 12, 12).contiguous()
    out = augmentation(X, gen(0))
    assert len({tuple(image.flatten().tolist()) for image in out}) == 6


def test_random_affine_with_zero_ranges_is_the_identity():
    X = images()
    torch.testing.assert_close(
        random_affine(X, degrees=0, translate=0, scale=1.0, generator=gen()), X, atol=1e-6, rtol=0
    )


def test_random_affine_only_rotating_keeps_a_centred_disc():
    side = 16
    rows, columns = torch.meshgrid(torch.arange(side) - 7.5, torch.arange(side) - 7.5, indexing="ij")
    disc = ((rows**2 + columns**2) < 4**2).float().expand(8, 1, side, side)
    rotated = random_affine(disc, degrees=180, translate=0, scale=1.0, generator=gen())
    assert (rotated - disc).abs().mean() < 0.05


def test_random_resized_crop_of_the_whole_image_is_the_identity():
    X = images(H=10, W=10)
    torch.testing.assert_close(random_resized_crop(X, scale=1.0, ratio=1.0, generator=gen()), X, atol=1e-5, rtol=0)


def test_random_resized_crop_of_a_constant_image_stays_constant():
    X = torch.full((6, 2, 9, 9), 0.3)  # the box lies inside the image, so nothing comes from outside
    torch.testing.assert_close(random_resized_crop(X, scale=(0.1, 1.0), generator=gen()), X, atol=1e-5, rtol=0)


def test_random_resized_crop_of_a_quarter_magnifies_one_quadrant():
    X = torch.zeros(64, 1, 8, 8)
    X[..., :4, :4] = 1  # the top-left quadrant is white
    cropped = random_resized_crop(X, scale=0.25, ratio=1.0, generator=gen())
    white = cropped.mean(dim=(1, 2, 3))
    # a box of a quarter of the area anywhere: at most all white, and all white only at the top-left
    assert white.max() <= 1 + 1e-6 and white.min() >= 0
    assert white.std() > 0.1, "different boxes for different images"


def test_gaussian_noise_has_the_requested_standard_deviation_and_zero_std_changes_nothing():
    X = torch.zeros(64, 1, 32, 32)
    noisy = gaussian_noise(X, std=0.2, generator=gen())
    assert noisy.std().item() == pytest.approx(0.2, rel=0.02)
    assert noisy.mean().abs().item() < 0.01
    torch.testing.assert_close(gaussian_noise(X + 1, std=0.0, generator=gen()), X + 1)


def test_random_erasing_sets_one_rectangle_per_image_to_value_within_the_area_range():
    X = torch.ones(200, 3, 20, 20)
    out = random_erasing(X, p=1.0, scale=(0.05, 0.2), value=0.0, generator=gen())
    erased = out == 0
    assert torch.equal(erased, erased[:, :1].expand_as(erased)), "the same rectangle on every channel"
    area = erased[:, 0].float().mean(dim=(1, 2))
    # rounding each side to whole pixels moves the area a little
    assert area.min() > 0.03 and area.max() < 0.26
    for mask in erased[:20, 0]:
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(columns), "a filled rectangle"
        assert rows.max() - rows.min() + 1 == len(rows) and columns.max() - columns.min() + 1 == len(columns)


def test_random_erasing_erases_a_share_p_of_the_images():
    X = torch.ones(2000, 1, 8, 8)
    out = random_erasing(X, p=0.3, scale=(0.1, 0.2), generator=gen())
    share = (out == 0).flatten(1).any(1).float().mean().item()
    assert share == pytest.approx(0.3, abs=0.04)
    torch.testing.assert_close(random_erasing(X, p=0.0, generator=gen()), X)


def test_compose_applies_in_order():
    X = images()
    composed = compose(lambda X: X + 1, lambda X: X * 2)
    torch.testing.assert_close(composed(X), (X + 1) * 2)


def test_augmentations_run_on_floats_of_any_device_and_dtype():
    X = images(B=3).double()
    for out in (
        random_affine(X, generator=gen()),
        random_resized_crop(X, generator=gen()),
        gaussian_noise(X, generator=gen()),
        random_erasing(X, generator=gen()),
    ):
        assert out.dtype == torch.float64


# --- bad input: clear errors ----------------------------------------------------------------------


def test_uint8_images_are_refused_with_the_scaling_hint():
    with pytest.raises(TypeError, match=r"X.float\(\) / 255"):
        random_affine(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


def test_images_without_a_channel_axis_are_refused_with_the_hint():
    with pytest.raises(ValueError, match=r"unsqueeze\(1\)"):
        random_resized_crop(torch.zeros(2, 4, 4))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda X: random_affine(X, degrees=-1), "degrees must be a number >= 0"),
        (lambda X: random_affine(X, scale=(1.2, 0.8)), "low <= high"),
        (lambda X: random_resized_crop(X, scale=(0.5, 1.5)), "at most 1"),
        (lambda X: random_resized_crop(X, ratio=(0.0, 1.0)), "low > 0"),
        (lambda X: random_erasing(X, p=1.5), r"in \[0, 1\]"),
        (lambda X: gaussian_noise(X, std=-0.1), "std must be a number >= 0"),
        (lambda X: random_affine(X, scale=(0.5, 1.0, 2.0)), "a pair"),
    ],
)
def test_bad_parameters_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call(images())


def test_compose_refuses_a_tensor_in_place_of_a_function():
    X = images()
    with pytest.raises(TypeError, match="not gaussian_noise"):
        compose(gaussian_noise(X))


def test_the_identity_resampling_matches_grid_sample_conventions():
    # align_corners=False reads pixel centres: the identity grid is exact, which affine relies on
    X = images(H=5, W=7)
    grid = F.affine_grid(torch.eye(2, 3).expand(4, 2, 3), list(X.shape), align_corners=False)
    torch.testing.assert_close(F.grid_sample(X, grid, align_corners=False), X, atol=1e-6, rtol=0)

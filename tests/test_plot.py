import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from dpdl.models import VAE
from dpdl.plot import (
    contour_with_paths,
    decode_latent_grid,
    image_grid,
    latent_grid,
    plot_history,
    scatter_latent,
)

HISTORY = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7], "acc": [0.5, 0.7, 0.8], "val_acc": [0.4, 0.6, 0.7]}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def quadratic(x, y):
    return x**2 + 4 * y**2


def himmelblau(x, y):
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def coordinates_decoder(z):
    """A fake decoder whose 2x3 image says where it was decoded: pixel 0 holds z[0], pixel 1 holds z[1]."""
    image = torch.zeros(z.shape[0], 2 * 3)
    image[:, 0] = z[:, 0]
    image[:, 1] = z[:, 1]
    return image


# plot_history


def test_plot_history_draws_train_and_val_of_each_family_on_one_axis():
    fig = plot_history(HISTORY)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc"]
    loss_axis = fig.axes[0]
    assert [line.get_label() for line in loss_axis.lines] == ["loss", "val_loss"]
    np.testing.assert_allclose(loss_axis.lines[1].get_ydata(), HISTORY["val_loss"])
    np.testing.assert_allclose(loss_axis.lines[0].get_xdata(), [1, 2, 3])


def test_plot_history_reads_torchbearer_epoch_dicts_and_skips_step_counts():
    epochs = [
        {"running_loss": 1.2, "loss": 1.0, "acc": 0.5, "val_loss": 1.1, "val_acc": 0.4, "train_steps": 10},
        {"running_loss": 0.7, "loss": 0.6, "acc": 0.7, "val_loss": 0.8, "val_acc": 0.6, "train_steps": 10},
    ]
    fig = plot_history(epochs)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["running_loss", "loss", "val_loss"]


def test_plot_history_accepts_objects_with_to_dict_and_tensor_values():
    class History:
        def to_dict(self):
            return {"train_loss": torch.tensor([0.9, 0.5]), "val_loss": [torch.tensor(1.0), None], "epoch": [1, 2]}

    fig = plot_history(History())
    assert len(fig.axes) == 1
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.9, 0.5])
    assert np.isnan(fig.axes[0].lines[1].get_ydata()[1])  # a missing value is a gap, not a crash


def test_plot_history_uses_the_epoch_column_and_reads_dpdl_history():
    from dpdl.train.history import History

    history = History.from_dict({"epoch": [1, 2], "loss": [0.9, 0.5], "val_loss": [1.0, 0.7]})
    fig = plot_history(history)
    assert [line.get_label() for line in fig.axes[0].lines] == ["loss", "val_loss"]
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [1.0, 0.7])
    resumed = plot_history({"epoch": [6, 7, 8], "loss": [0.3, 0.2, 0.1]})
    np.testing.assert_allclose(resumed.axes[0].lines[0].get_xdata(), [6, 7, 8])


def test_plot_history_accepts_a_pandas_style_column_dict():
    columns = {"loss": {0: 0.9, 1: 0.4}, "val_loss": {0: 1.0, 1: 0.6}}  # DataFrame.to_dict()
    np.testing.assert_allclose(plot_history(columns).axes[0].lines[1].get_ydata(), [1.0, 0.6])


def test_plot_history_metrics_picks_families():
    assert [ax.get_title() for ax in plot_history(HISTORY, metrics="acc").axes] == ["acc"]
    assert len(plot_history(HISTORY, metrics=["acc", "loss"]).axes) == 2


def test_plot_history_draws_a_fit_history_and_picks_a_family_by_a_validation_name():
    from dpdl.train.history import History

    history = History(
        {"loss": 1 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.2 / e, "val_accuracy": 0.5} for e in (1, 2, 3)
    )
    fig = plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[1].lines] == ["accuracy", "val_accuracy"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [1, 2, 3])
    assert [ax.get_title() for ax in plot_history(history, metrics=["val_loss", "loss"]).axes] == ["loss"]


def test_plot_history_unknown_metric_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"no metric family \['f1'\].*\['acc', 'loss'\]"):
        plot_history(HISTORY, metrics=["f1"])


@pytest.mark.parametrize(
    ("history", "error", "message"),
    [
        ({}, ValueError, "empty"),
        ({"epoch": [1, 2]}, ValueError, "nothing to plot"),
        ([1.0, 0.5], TypeError, "one dict of metrics per epoch"),
        ("loss", TypeError, "dict of per-epoch lists"),
        ({"loss": 0.5}, TypeError, r"history\['loss'\] must be a list"),
        ({"loss": ["low", "high"]}, TypeError, "must hold numbers"),
    ],
)
def test_plot_history_rejects_what_is_not_a_history(history, error, message):
    with pytest.raises(error, match=message):
        plot_history(history)


# image_grid


def test_image_grid_tiles_a_batch_with_make_grid_into_one_axis():
    fig = image_grid(torch.rand(10, 1, 28, 28), nrow=4, title="digits")
    assert len(fig.axes) == 1
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (3 * 30 + 2, 4 * 30 + 2)  # 3 rows x 4 columns of 28 + 2 padding, one gray channel
    assert fig._suptitle.get_text() == "digits"


def test_image_grid_shows_colour_and_channel_less_batches():
    assert image_grid(torch.rand(5, 3, 8, 8), nrow=5).axes[0].images[0].get_array().shape == (12, 52, 3)
    assert image_grid(torch.rand(2, 8, 8)).axes[0].images[0].get_array().shape == (12, 22)
    assert image_grid([torch.rand(1, 8, 8)] * 3).axes[0].images[0].get_array().shape == (12, 32)


def test_image_grid_with_labels_gives_each_image_an_axis_titled_by_its_label():
    labels = torch.tensor([3, 1, 4, 1, 5])
    fig = image_grid(torch.rand(5, 1, 28, 28), labels=labels, nrow=3)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == ["3", "1", "4", "1", "5"]
    assert fig.axes[0].images[0].get_array().shape == (28, 28)


def test_image_grid_takes_labels_from_a_numpy_array():
    fig = image_grid(np.random.rand(2, 1, 4, 4), labels=np.array(["cat", "dog"]))
    assert [ax.get_title() for ax in fig.axes] == ["cat", "dog"]


def test_image_grid_rescales_normalised_images_and_uint8_to_unit_range():
    normalised = image_grid(torch.randn(4, 1, 6, 6) * 3, labels=["a", "b", "c", "d"])
    shown = np.stack([ax.images[0].get_array() for ax in normalised.axes])
    assert shown.min() == pytest.approx(0) and shown.max() == pytest.approx(1)
    as_bytes = image_grid(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), labels=["white"])
    np.testing.assert_allclose(as_bytes.axes[0].images[0].get_array(), np.ones((2, 2)))


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (torch.rand(4, 784), {}, r"X.view\(-1, 1, 28, 28\)"),
        (torch.rand(4, 28, 28, 3), {}, r"permute\(0, 3, 1, 2\)"),
        (torch.rand(4, 2, 28, 28), {}, "1- or 3-channel"),
        (torch.rand(0, 1, 4, 4), {}, "empty batch"),
        (torch.rand(4, 1, 4, 4), {"labels": [1, 2]}, "4 images but 2 labels"),
        (torch.rand(4, 1, 4, 4), {"nrow": 0}, "nrow must be a positive int"),
    ],
)
def test_image_grid_rejects_bad_input_with_a_fix(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        image_grid(images, **kwargs)


# contour_with_paths


def test_contour_with_paths_draws_one_line_per_path_through_its_points():
    sgd = np.array([[-4.0, 4.0], [-2.0, 1.0], [0.0, 0.0]])
    adam = [torch.tensor([3.0, -3.0]), torch.tensor([1.0, -1.0])]  # a list of visited points works too
    fig = contour_with_paths(himmelblau, (-5, 5), (-5, 5), paths={"sgd": sgd, "adam": adam})
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the plot and its colour bar
    assert [line.get_label() for line in ax.lines] == ["sgd", "adam"]
    np.testing.assert_allclose(np.column_stack(ax.lines[0].get_data()), sgd)
    np.testing.assert_allclose(np.column_stack(ax.lines[1].get_data()), [[3, -3], [1, -1]])
    assert ax.get_xlim() == (-5, 5) and ax.get_ylim() == (-5, 5)


def test_contour_with_paths_evaluates_f_on_a_grid_with_x_along_columns():
    seen = {}

    def f(x, y):
        seen["x"], seen["y"] = x, y
        return quadratic(x, y)

    fig = contour_with_paths(f, (-1, 2), (0, 3), resolution=7)
    assert len(fig.axes[0].lines) == 0
    assert seen["x"].shape == seen["y"].shape == (7, 7)
    torch.testing.assert_close(seen["x"][3], torch.linspace(-1, 2, 7))
    torch.testing.assert_close(seen["y"][:, 3], torch.linspace(0, 3, 7))


def test_contour_with_paths_log_scale_spaces_levels_geometrically():
    fig = contour_with_paths(quadratic, (-2, 2), (-2, 2), levels=8, log_scale=True)
    levels = fig.axes[0].collections[0].levels
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)
    assert ratios[0] > 1.5


def test_contour_with_paths_accepts_numpy_functions_and_draws_into_a_given_axis():
    fig, (left, right) = plt.subplots(1, 2)
    returned = contour_with_paths(lambda x, y: np.cos(x) + np.sin(y), (-3, 3), (-3, 3), ax=right)
    assert returned is fig
    assert len(right.collections) == 1 and len(left.collections) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"paths": {"sgd": np.zeros((5, 3))}}, r"path 'sgd' must be an \(N, 2\) array"),
        ({"paths": {"sgd": np.zeros(2)}}, r"got shape \(2,\)"),
        ({"xlim": (1, -1)}, "xlim must satisfy low < high"),
        ({"ylim": 3}, "ylim must be a pair"),
        ({"resolution": 1}, "resolution must be an int >= 2"),
        ({"f": lambda x, y: (x + y).sum()}, "one value per grid point"),
        ({"f": lambda x, y: x, "log_scale": True}, "log_scale=True needs f >= 0"),
    ],
)
def test_contour_with_paths_rejects_bad_arguments(kwargs, message):
    arguments = {"f": quadratic, "xlim": (-1, 1), "ylim": (-1, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        contour_with_paths(**arguments)


# decode_latent_grid and latent_grid


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 7),
    low=st.floats(-5, 0),
    width=st.floats(0.5, 6),
    i=st.integers(0, 6),
    j=st.integers(0, 6),
)
def test_decode_latent_grid_puts_point_i_j_in_tile_i_j_with_z1_growing_upwards(n, low, width, i, j):
    i, j = i % n, j % n
    high = low + width
    picture = decode_latent_grid(coordinates_decoder, (low, high), n, image_shape=(2, 3))
    assert picture.shape == (n * 2, n * 3)
    tile = picture[i * 2 : (i + 1) * 2, j * 3 : (j + 1) * 3]
    values = torch.linspace(low, high, n)
    assert tile[0, 0] == pytest.approx(values[j].item())  # z[0]: left to right
    assert tile[0, 1] == pytest.approx(values[n - 1 - i].item())  # z[1]: bottom to top
    assert torch.all(tile[1] == 0)


def test_decode_latent_grid_uses_the_book_grid_and_a_vae_decoder():
    model = VAE().eval()
    picture = decode_latent_grid(model.decode, sigmoid=True)
    assert picture.shape == (21 * 28, 21 * 28)
    z = torch.tensor([[-4.0, 4.0], [0.0, 0.0], [4.0, -4.0]])  # top-left, centre, bottom-right tiles
    expected = torch.sigmoid(model.decode(z)).detach()[:, 0]
    torch.testing.assert_close(picture[:28, :28], expected[0])
    torch.testing.assert_close(picture[10 * 28 : 11 * 28, 10 * 28 : 11 * 28], expected[1])
    torch.testing.assert_close(picture[-28:, -28:], expected[2])


@pytest.mark.parametrize("shape", [(1, 4, 5), (4, 5)])
def test_decode_latent_grid_accepts_decoders_returning_images(shape):
    picture = decode_latent_grid(lambda z: torch.ones(z.shape[0], *shape), n=3, image_shape=(4, 5), device="cpu")
    assert picture.shape == (12, 15)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image_shape": (4, 4)}, ValueError, r"decode returned shape \(9, 6\).*image_shape"),
        ({"image_shape": (1, 2, 3)}, ValueError, r"image_shape must be \(H, W\)"),
        ({"n": 0}, ValueError, "n must be a positive int"),
        ({"latent_range": (4, -4)}, ValueError, "latent_range must satisfy low < high"),
        ({"decode": lambda z: z.numpy()}, TypeError, "decode must return a tensor"),
    ],
)
def test_decode_latent_grid_rejects_bad_arguments(kwargs, error, message):
    arguments = {"decode": coordinates_decoder, "n": 3, "image_shape": (2, 3), **kwargs}
    with pytest.raises(error, match=message):
        decode_latent_grid(**arguments)


def test_latent_grid_shows_the_decoded_grid_in_latent_coordinates():
    fig = latent_grid(coordinates_decoder, n=21, image_shape=(2, 3))
    assert len(fig.axes) == 1
    image = fig.axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), decode_latent_grid(coordinates_decoder, n=21, image_shape=(2, 3)))
    np.testing.assert_allclose(image.get_extent(), [-4.2, 4.2, -4.2, 4.2])  # tile centres sit on the grid points


def test_latent_codes_can_be_drawn_over_the_latent_grid_on_one_axis():
    fig, ax = plt.subplots()
    assert latent_grid(coordinates_decoder, n=5, image_shape=(2, 3), ax=ax) is fig
    assert scatter_latent(torch.randn(10, 2), torch.arange(10) % 2, ax=ax) is fig
    assert len(fig.axes) == 1 and len(ax.images) == 1 and len(ax.collections) == 2


def test_latent_grid_keeps_pixel_values_on_a_fixed_scale():
    fig = latent_grid(VAE().decode, n=3, sigmoid=True)
    assert fig.axes[0].images[0].get_clim() == (0, 1)


# scatter_latent


def test_scatter_latent_draws_one_coloured_set_per_class():
    z = torch.randn(60, 2)
    y = torch.arange(60) % 3
    fig = scatter_latent(z, y, title="codes", class_names=["zero", "one", "two"])
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert len(ax.collections) == 3
    np.testing.assert_allclose(ax.collections[1].get_offsets(), z[y == 1].numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    assert ax.get_title() == "codes"


def test_scatter_latent_without_labels_draws_one_set():
    assert len(scatter_latent(np.random.randn(10, 2)).axes[0].collections) == 1


@pytest.mark.parametrize(
    ("z", "y", "kwargs", "message"),
    [
        (torch.randn(10, 64), None, {}, r"z must have shape \(N, 2\).*PCA"),
        (torch.randn(10, 2), torch.zeros(9), {}, "10 codes but 9 labels"),
        (torch.randn(10, 2), torch.arange(10), {"class_names": ["a"]}, "one name per class"),
    ],
)
def test_scatter_latent_rejects_bad_input(z, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scatter_latent(z, y, **kwargs)


# every figure saves as PNG


@pytest.mark.parametrize(
    "make_figure",
    [
        lambda: plot_history(HISTORY),
        lambda: image_grid(torch.rand(4, 1, 8, 8)),
        lambda: image_grid(torch.rand(4, 3, 8, 8), labels=[0, 1, 2, 3]),
        lambda: contour_with_paths(himmelblau, (-5, 5), (-5, 5), {"sgd": np.zeros((3, 2))}, log_scale=True),
        lambda: latent_grid(coordinates_decoder, n=5, image_shape=(2, 3)),
        lambda: scatter_latent(torch.randn(20, 2), torch.arange(20) % 4),
    ],
    ids=["history", "grid", "labelled-grid", "contour", "latent-grid", "scatter"],
)
def test_figures_save_as_png(make_figure, tmp_path):
    path = tmp_path / "figure.png"
    make_figure().savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

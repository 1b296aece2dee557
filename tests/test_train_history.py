import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpdl.train import History


def three_epochs():
    return History(
        [
            {"loss": 0.9, "accuracy": 0.60, "val_loss": 1.00, "val_accuracy": 0.55},
            {"loss": 0.5, "accuracy": 0.80, "val_loss": 0.70, "val_accuracy": 0.75},
            {"loss": 0.3, "accuracy": 0.90, "val_loss": 0.75, "val_accuracy": 0.74},
        ]
    )


def test_metrics_read_as_one_value_per_epoch():
    history = three_epochs()
    assert len(history) == 3
    assert history.epochs == [1, 2, 3]
    assert history["loss"] == [0.9, 0.5, 0.3]
    assert history.metrics == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert "val_loss" in history and "f1" not in history


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(KeyError, match="val_accuracy"):
        three_epochs()["acc"]


def test_a_metric_missing_in_some_epochs_reads_as_nan():
    history = History([{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.6}])
    first, second = history["val_loss"]
    assert math.isnan(first) and second == 0.6


def test_best_is_the_largest_accuracy_and_the_smallest_loss():
    history = three_epochs()
    assert history.best("val_accuracy") == 0.75 and history.best_epoch("val_accuracy") == 2
    assert history.best("val_loss") == 0.70 and history.best_epoch("val_loss") == 2
    assert history.best("loss") == 0.3
    assert history.best("val_loss", mode="max") == 1.00


def test_best_rejects_a_bad_mode_and_an_all_nan_metric():
    with pytest.raises(ValueError, match="'min' or 'max'"):
        three_epochs().best("loss", mode="lowest")
    with pytest.raises(ValueError, match="nan"):
        History([{"loss": math.nan}]).best("loss")


def test_to_dict_is_json_ready_columns():
    columns = three_epochs().to_dict()
    assert columns["epoch"] == [1, 2, 3]
    assert columns["val_accuracy"] == [0.55, 0.75, 0.74]
    assert json.loads(json.dumps(columns)) == columns


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["loss", "accuracy", "val_loss"]), st.floats(-1e6, 1e6), min_size=1),
        max_size=6,
    )
)
def test_from_dict_inverts_to_dict(records):
    history = History(records)
    assert History.from_dict(history.to_dict()) == history


def test_from_dict_rejects_columns_of_different_lengths():
    with pytest.raises(ValueError, match="one value per epoch"):
        History.from_dict({"loss": [1.0, 0.5], "val_loss": [1.0]})


def test_records_must_be_dicts():
    with pytest.raises(TypeError, match="dict"):
        History().append([0.5])


def test_repr_is_a_table_of_rounded_numbers():
    text = repr(History([{"loss": 0.123456789, "val_accuracy": 0.5}, {"loss": 1.5e-6}]))
    assert text.splitlines()[0] == "History(2 epochs)"
    assert "0.1235" in text and "0.123456789" not in text
    assert "1.500e-06" in text
    assert text.splitlines()[-1].rstrip().endswith("-")  # epoch 2 has no val_accuracy
    assert repr(History()) == "History(0 epochs)"


def test_repr_of_a_long_history_shows_its_ends():
    lines = repr(History({"loss": float(i)} for i in range(30))).splitlines()
    assert len(lines) == 2 + 5 + 1 + 5
    assert lines[-1].split() == ["30", "29.0000"]

"""What happened during training: one record of metrics per epoch, to print, compare and plot.

:func:`dpdl.train.fit` returns a :class:`History`; ``history["val_loss"]`` is a list with one number per
epoch, and ``dpdl.plot.plot_history(history)`` draws the learning curves every lab looks at for over- and
under-fitting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["History"]


class History:
    """Per-epoch metrics of one training run.

    ``history["loss"]`` → one float per epoch; ``history.epochs`` → ``[1, 2, ...]``; ``len(history)`` → the
    number of epochs; ``history.best("val_accuracy")`` → the best value; ``history.to_dict()`` → plain
    lists for JSON or ``pandas.DataFrame``. Metric names starting with ``val_`` are validation metrics.
    """

    def __init__(self, records: Iterable[Mapping[str, float]] = ()) -> None:
        self.records: list[dict[str, float]] = []
        for record in records:
            self.append(record)

    def append(self, record: Mapping[str, float]) -> None:
        """Add the metrics of the next epoch, e.g. ``{"loss": 0.31, "val_loss": 0.35}``."""
        if not isinstance(record, Mapping):
            raise TypeError(f"a History record is a dict of metric name -> number; got {type(record).__name__}")
        self.records.append({str(name): float(value) for name, value in record.items()})

    @property
    def epochs(self) -> list[int]:
        """The epoch numbers, counting from 1."""
        return list(range(1, len(self.records) + 1))

    @property
    def metrics(self) -> list[str]:
        """Every metric name recorded, in the order first seen."""
        names: dict[str, None] = {}
        for record in self.records:
            names.update(dict.fromkeys(record))
        return list(names)

    def __getitem__(self, metric: str) -> list[float]:
        """One value per epoch; ``nan`` for an epoch that did not record ``metric``."""
        if metric not in self:
            raise KeyError(f"no metric {metric!r} in this history; it has {self.metrics}")
        return [record.get(metric, math.nan) for record in self.records]

    def __contains__(self, metric: object) -> bool:
        return any(metric in record for record in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.records == other.records

    def best(self, metric: str, mode: str | None = None) -> float:
        """The best value of ``metric`` over the epochs: the largest for accuracies, else the smallest.

        ``mode`` ("min" or "max") overrides the guess made from the name (``acc`` in it means "max").
        """
        return self.records[self.best_epoch(metric, mode) - 1][metric]

    def best_epoch(self, metric: str, mode: str | None = None) -> int:
        """The epoch (counting from 1) with the best value of ``metric``; the earliest one on a tie."""
        values = self[metric]
        if mode is None:
            mode = "max" if "acc" in metric else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        sign = 1.0 if mode == "min" else -1.0
        scored = [(sign * v, i) for i, v in enumerate(values) if not math.isnan(v)]
        if not scored:
            raise ValueError(f"{metric!r} has no numbers to compare (only nan)")
        return min(scored)[1] + 1

    def to_dict(self) -> dict[str, list[float]]:
        """Column-wise plain lists: ``{"epoch": [1, 2], "loss": [...], ...}`` (JSON- and pandas-ready)."""
        columns: dict[str, list[float]] = {"epoch": self.epochs}
        columns.update({metric: self[metric] for metric in self.metrics})
        return columns

    @classmethod
    def from_dict(cls, columns: Mapping[str, list[float]]) -> History:
        """The inverse of :meth:`to_dict`, e.g. for a history saved as JSON beside a checkpoint."""
        metrics = {name: list(values) for name, values in columns.items() if name != "epoch"}
        lengths = {len(values) for values in metrics.values()}
        if len(lengths) > 1:
            raise ValueError(f"every metric needs one value per epoch; got lists of lengths {sorted(lengths)}")
        num_epochs = lengths.pop() if lengths else 0
        return cls(
            {name: values[i] for name, values in metrics.items() if not math.isnan(values[i])}
            for i in range(num_epochs)
        )

    def __repr__(self) -> str:
        if not self.records:
            return "History(0 epochs)"
        names = self.metrics
        widths = [max(len(name), 8) for name in names]
        lines = [f"History({len(self)} epoch{'s' if len(self) != 1 else ''})"]
        lines.append("epoch  " + "  ".join(name.rjust(w) for name, w in zip(names, widths)))
        shown = range(len(self)) if len(self) <= 10 else [*range(5), None, *range(len(self) - 5, len(self))]
        for i in shown:
            if i is None:
                lines.append("  ...")
                continue
            cells = (_format(self.records[i].get(name, math.nan)).rjust(w) for name, w in zip(names, widths))
            lines.append(f"{i + 1:>5}  " + "  ".join(cells))
        return "\n".join(lines)


def _format(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"

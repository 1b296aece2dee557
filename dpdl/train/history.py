"""What happened during training: one record of metrics per epoch, to print, compare and plot.

:func:`dpdl.train.fit` returns a :class:`History`; ``history["val_loss"]`` is a list with one number per
epoch, and ``history.plot()`` draws the learning curves every lab looks at for over- and under-fitting.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["History"]

_VAL = "val_"


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
    def from_dict(cls, columns: Mapping[str, list[float]]) -> "History":
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

    def plot(self, metrics: Iterable[str] | None = None) -> "Figure":
        """Learning curves, one panel per metric, training (solid) against validation (dashed) by epoch.

        ``metrics`` names the panels, e.g. ``["loss"]``; ``val_loss`` is drawn in the ``loss`` panel. The
        default is every metric recorded. Returns a ``matplotlib.figure.Figure`` that is not registered
        with pyplot, so a notebook shows it once (as the cell's value) and no figure piles up.
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        panels = self._panels(metrics)
        fig = Figure(figsize=(4.2 * len(panels), 3.2), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, base in zip(axes, panels):
            for name, label, style in ((base, "train", "-"), (_VAL + base, "validation", "--")):
                if name in self:
                    ax.plot(self.epochs, self[name], style, marker="o", markersize=3, label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(base)
            ax.set_title(base)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        return fig

    def _panels(self, metrics: Iterable[str] | None) -> list[str]:
        if not self.records:
            raise ValueError("this history is empty; train for at least one epoch before plotting")
        available = list(dict.fromkeys(_base(name) for name in self.metrics))
        if metrics is None:
            return available
        if isinstance(metrics, str):
            metrics = [metrics]
        panels = list(dict.fromkeys(_base(name) for name in metrics))
        unknown = [name for name in panels if name not in available]
        if unknown or not panels:
            raise ValueError(f"cannot plot {unknown or 'no metrics'}; this history has {available}")
        return panels


def _base(name: str) -> str:
    return name[len(_VAL):] if name.startswith(_VAL) else name


def _format(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"

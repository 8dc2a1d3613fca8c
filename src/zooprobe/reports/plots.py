"""Report plots as PNG bytes: learning curves, layer profiles, predicted against achieved accuracy.

matplotlib is imported inside each function (Agg backend, no display) so that the catalog and the
CLI start without it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SourceUnavailableError
from .model import FinetuneComparison, LayerProfile, PredictionCheck

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 96


def _figure(width: float, height: float, columns: int = 1, top: float = 0.45) -> tuple[Figure, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SourceUnavailableError(
            "the HTML report draws its plots with matplotlib, which is not installed;"
            " install it with: pip install 'zooprobe[reports]'"
        ) from None
    # A bare Figure draws with the Agg canvas and never touches pyplot's global state or a display.
    figure = Figure(figsize=(width, height), dpi=DPI)
    # Fixed margins: the figures' sizes and labels are fixed, and a layout engine doubles the drawing time.
    figure.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - top / height)
    figure.subplots_adjust(wspace=0.25)
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def learning_curves(comparison: FinetuneComparison) -> bytes:
    """Validation loss and accuracy by epoch, one line per arm (the scratch baseline dashed)."""
    figure, (loss_axes, accuracy_axes) = _figure(9.0, 3.6, columns=2, top=0.7)
    for arm in comparison.arms:
        style = {"linestyle": "--" if arm.is_scratch else "-", "marker": "o", "label": arm.name}
        epochs = [row.epoch for row in arm.epochs]
        loss_axes.plot(epochs, [_nan(row.val_loss) for row in arm.epochs], **style)
        accuracy_axes.plot(epochs, [_nan(row.val_accuracy) for row in arm.epochs], **style)
    loss_axes.set(title="Validation loss", xlabel="epoch", ylabel="loss")
    accuracy_axes.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    accuracy_axes.legend(fontsize="small")
    figure.suptitle(f"{comparison.model} ({comparison.run_id})", fontsize="medium")
    return _png(figure)


def layer_profiles(profiles: Sequence[LayerProfile]) -> bytes:
    """Probe accuracy against relative depth (0 = input, 1 = last cut point) with its fold spread."""
    figure, (axes,) = _figure(6.4, 3.6)
    for profile in profiles:
        depths = [p.depth for p in profile.points]
        accuracy = [p.probe_accuracy for p in profile.points]
        spread = [p.probe_spread or 0.0 for p in profile.points]
        label = f"#{profile.rank} {profile.model}" if profile.rank else profile.model
        (line,) = axes.plot(depths, accuracy, marker="o", label=label)
        axes.fill_between(
            depths,
            [a - s for a, s in zip(accuracy, spread, strict=True)],
            [a + s for a, s in zip(accuracy, spread, strict=True)],
            color=line.get_color(),
            alpha=0.15,
        )
    axes.set(title="Linear probe accuracy by depth", xlabel="relative depth of the cut point", ylabel="accuracy")
    axes.set_xlim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _png(figure)


def predicted_vs_achieved(checks: Sequence[PredictionCheck]) -> bytes:
    """Each fine-tuned backbone: predicted accuracy against the accuracy it reached; the calibrated interval
    (where the achieved accuracy was expected to fall) as a band above the prediction, else ± the fold spread."""
    figure, (axes,) = _figure(6.4, 4.4)
    for check in checks:
        span = (check.interval_low, check.interval_high)
        line = axes.errorbar(
            check.predicted,
            check.achieved,
            xerr=None if span[0] is not None else check.uncertainty or 0.0,
            marker="o",
            capsize=3,
            label=f"{check.model} [{check.arm}]",
        )
        if span[0] is not None and span[1] is not None:
            axes.plot([check.predicted] * 2, span, linewidth=6, alpha=0.3, color=line[0].get_color())
    values = [v for c in checks for v in (c.predicted, c.achieved, c.interval_low, c.interval_high) if v is not None]
    low, high = min(values) - 0.05, max(values) + 0.05
    axes.plot([low, high], [low, high], color="grey", linewidth=1, linestyle=":", label="achieved = predicted")
    axes.set(
        title="Predicted vs achieved accuracy",
        xlabel="predicted (assessment)",
        ylabel="achieved (fine-tuned, final)",
        xlim=(low, high),
        ylim=(low, high),
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="x-small", loc="upper left")
    return _png(figure)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value

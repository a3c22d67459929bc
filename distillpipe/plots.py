"""Plots for the run report, drawn with matplotlib and returned as inline SVG.

The SVG is self-contained (text as ``<text>``, no external fonts or scripts)
and deterministic: fixed id salt, no date in the metadata.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

STYLE = {
    "svg.hashsalt": "distillpipe",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def _svg(figure: plt.Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return _METADATA.sub("", text[text.index("<svg") :], count=1)


def bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> str:
    """Horizontal bars, first label on top."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(6.4, 0.45 * len(labels) + 1.0))
        positions = range(len(labels))
        axes.barh(positions, values, color=COLOURS[0])
        axes.set_yticks(list(positions), labels=list(labels))
        axes.invert_yaxis()
        for position, value in zip(positions, values, strict=True):
            axes.annotate(
                f"{value:,.0f}",
                (value, position),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
            )
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        return _svg(figure)


def histogram(
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    thresholds: Mapping[str, float] | None = None,
) -> str:
    """Overlaid histograms on shared bins, with labelled vertical threshold lines."""
    values = [v for vs in series.values() for v in vs]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(6.4, 3.0))
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        bins = 20 if high > low else 1
        for colour, (label, data) in zip(COLOURS, series.items(), strict=False):
            if data:
                axes.hist(
                    data,
                    bins=bins,
                    range=(low, high or 1.0),
                    alpha=0.7,
                    label=f"{label} ({len(data)})",
                    color=colour,
                )
        for name, value in (thresholds or {}).items():
            axes.axvline(value, color="black", linestyle="--", linewidth=1)
            axes.annotate(
                f"{name} = {value:g}",
                (value, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -10),
                textcoords="offset points",
            )
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("count")
        if len(series) > 1 or thresholds:
            axes.legend(loc="upper right", frameon=False)
        return _svg(figure)


def stacked_bars(labels: Sequence[str], series: Mapping[str, Sequence[float]], title: str) -> str:
    """Vertical bars per label, one stacked segment per series."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(6.4, 3.0))
        bottom = [0.0] * len(labels)
        for colour, (name, values) in zip(COLOURS, series.items(), strict=False):
            axes.bar(list(labels), list(values), bottom=bottom, label=name, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        axes.set_title(title)
        axes.legend(frameon=False)
        return _svg(figure)

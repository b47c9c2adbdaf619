"""Figure 2 of the paper: validation loss against rank, with the base MTP as a band.

:func:`plot_sweep` draws the aggregated rows of :func:`mlipress.compress.sweep.aggregate`
(mean +- 1 sigma error bars per rank, x labels ``"rank (#radial params)"``), the base MTP's
mean +- sigma as a horizontal band, and marks the optimal and ~50% ranks of
:func:`~mlipress.compress.sweep.choose_ranks`. Matplotlib with the Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mlipress.io.atomic import atomic_open

__all__ = ["plot_sweep"]


def _rank_text(rank) -> str:
    if isinstance(rank, (list, tuple)):
        return ",".join(str(r) for r in rank)
    return str(rank)


def plot_sweep(agg: Sequence[dict], path, base: dict | None = None, chosen: dict | None = None,
               title: str | None = None, metric: str = "valid_loss", ylabel: str = "validation loss f") -> Path:
    """Write a PNG of ``metric`` (mean +- sigma) per rank to ``path``; returns the path.

    ``agg``: entries of :func:`~mlipress.compress.sweep.aggregate` (one kind; dense entries are
    drawn as the band instead). ``base``: ``{"mean", "std"}`` of the base MTP (default: the
    dense entry of ``agg`` if present). ``chosen``: the result of
    :func:`~mlipress.compress.sweep.choose_ranks` (its entries are marked).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in agg if e.get("kind") != "dense" and e[metric]["mean"] is not None]
    if base is None:
        dense = [e for e in agg if e.get("kind") == "dense" and e[metric]["mean"] is not None]
        base = dense[0][metric] if dense else None
    entries = sorted(entries, key=lambda e: e["radial_params"])
    xs = list(range(len(entries)))
    means = [e[metric]["mean"] for e in entries]
    stds = [e[metric]["std"] or 0.0 for e in entries]
    labels = [f"{_rank_text(e['rank'])} ({e['radial_params']})" for e in entries]

    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(entries) + 2.5), 3.6), dpi=120)
    if base is not None and base.get("mean") is not None:
        lo, hi = base["mean"] - (base.get("std") or 0.0), base["mean"] + (base.get("std") or 0.0)
        ax.axhspan(lo, hi, color="tab:gray", alpha=0.25, lw=0)
        ax.axhline(base["mean"], color="tab:gray", lw=1.2, label="base MTP (mean $\\pm 1\\sigma$)")
    ax.errorbar(xs, means, yerr=stds, fmt="o-", color="tab:blue", capsize=4, label="compressed (mean $\\pm 1\\sigma$)")
    if chosen:
        marks = (("optimal", "tab:red", "*", "optimal (>= 20% compression)"), ("half", "tab:green", "D", "~50% parameters"))
        for key, color, marker, text in marks:
            e = chosen.get(key)
            if e is not None and e in entries:
                i = entries.index(e)
                ax.plot([xs[i]], [means[i]], marker=marker, color=color, ms=12 if marker == "*" else 8,
                        ls="none", label=text, zorder=5, mfc="none" if marker == "D" else color)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_xlabel("rank (#radial params)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:  # atomic, and written by MPI rank 0 only
        fig.savefig(handle, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return path

"""The feature figure of a domain-unlearning report: test image features by domain, before and after unlearning, each
panel projected on the first two principal components of its own features (scikit-learn PCA: unlearning may move the
features into directions the original's components do not show). PNG bytes, drawn on an explicit matplotlib Figure
(no pyplot)."""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np


def pca_by_domain(before: np.ndarray, after: np.ndarray, domains: np.ndarray, domain_names: Sequence[str],
                  forget_domains: Sequence[int] = (), title: str = "") -> bytes:
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA
    fig = Figure(figsize=(10.5, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    palette = colormaps["tab10"].colors
    for ax, feats, name in ((axes[0], before, "before unlearning (zero-shot)"), (axes[1], after, "after unlearning")):
        xy = PCA(n_components=2, random_state=0).fit_transform(feats)
        for d, dom in enumerate(domain_names):
            m = domains == d
            forgotten = d in forget_domains
            ax.scatter(xy[m, 0], xy[m, 1], s=7, alpha=0.6, color=palette[d % len(palette)],
                       marker="x" if forgotten else "o", label=f"{dom} (forget)" if forgotten else dom)
        ax.set_title(name)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    axes[1].legend(loc="best", fontsize=8, markerscale=2)
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()

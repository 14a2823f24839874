"""`hieramamba predict --plot OUT.png`: a timeline of one video with each query's top-k moments.

One row per query over the video's duration in seconds; each predicted moment is a bar whose
opacity follows its score (rank written on it), the ground truth (when the query came with a
segment) a hatched outline behind them. matplotlib with the Agg backend (files only, no display),
imported only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

from hieramamba.errors import ConfigError

ROW_HEIGHT_IN = 0.7  # inches per query row
MAX_LABEL_CHARS = 60  # longer query texts are cut on the y axis


def plot_timeline(prediction, path: str | Path) -> Path:
    """Write the timeline of a `VideoPrediction` to `path` (PNG, atomically); returns the path."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'hieramamba[predict]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from hieramamba.atomic import atomic_open

    path = Path(path)
    queries = prediction.queries
    fig, ax = plt.subplots(figsize=(10, 1.2 + ROW_HEIGHT_IN * len(queries)))
    try:
        for row, q in enumerate(queries):
            y = len(queries) - 1 - row  # first query on top
            if q.ground_truth is not None:
                s, e = q.ground_truth
                ax.barh(y, e - s, left=s, height=0.8, fill=False, hatch="//", edgecolor="tab:green", linewidth=1.5)
            best = max((c for _, _, c in q.moments), default=1.0) or 1.0
            # draw low ranks first so rank 1 is on top where moments overlap
            for rank, (s, e, c) in reversed(list(enumerate(q.moments, 1))):
                ax.barh(y, max(e - s, prediction.duration_s * 2e-3), left=s, height=0.55, color="tab:blue",
                        alpha=0.25 + 0.75 * max(c, 0.0) / best, edgecolor="navy")
                ax.text((s + e) / 2, y + 0.3, str(rank), ha="center", va="bottom", fontsize=7, color="navy")
        labels = [q.query if len(q.query) <= MAX_LABEL_CHARS else q.query[: MAX_LABEL_CHARS - 3] + "..." for q in queries]
        ax.set_yticks(range(len(queries)), labels[::-1], fontsize=8)
        ax.set_xlim(0, prediction.duration_s)
        ax.set_ylim(-0.7, len(queries) - 0.1)
        ax.set_xlabel("seconds")
        name = Path(prediction.video).name + (f" [{prediction.video_key}]" if prediction.video_key else "")
        ax.set_title(f"{name}: top-{max((len(q.moments) for q in queries), default=0)} moments",
                     fontsize=9)
        handles = [Patch(color="tab:blue", alpha=0.8, label="predicted (opacity = score, number = rank)")]
        if any(q.ground_truth is not None for q in queries):
            handles.append(Patch(fill=False, hatch="//", edgecolor="tab:green", label="ground truth"))
        # under the axis, so it never hides a moment
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / (1 + len(queries))),
                  ncol=len(handles), fontsize=7, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path

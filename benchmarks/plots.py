"""``--plot DIR``: PNG charts of a run, drawn with matplotlib (the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the charts that the run's sections have data for; return their paths."""
    import matplotlib  # noqa: PLC0415 - optional, checked before the run starts

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections = results["sections"]

    post = sections.get("post-cancel", {}).get("data")
    if post:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, field, title in (
            (axes[0], "insert_ns", "Posting a delayed timer"),
            (axes[1], "cancel_ns", "Cancelling a pending timer"),
        ):
            for key, values in post[field].items():
                colour = f"C{list(post['labels']).index(key) % 10}"  # the same in both
                ax.plot(post["sizes"], values, marker="o", color=colour, label=post["labels"][key])
            ax.set_xscale("log")
            ax.set_yscale("log")
            for j, row in enumerate(post.get("slow", [])):
                ax.plot(
                    [row["n"]],
                    [row[field]],
                    marker="s^Dv"[j % 4],
                    linestyle="none",
                    color="black",  # points of their own: not a colour of a line
                    label=f"{row['label']} (N = {row['n']:,})",
                )
            ax.set_xlabel("timers posted (N): the average cost while 0 -> N are pending")
            ax.set_ylabel("ns per timer")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=7)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = out / "cost_per_timer.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    late = sections.get("lateness", {}).get("data")
    if late:
        bins = late["hist_ms"]
        edges = [bins["low"] + i * bins["width"] for i in range(bins["bins"])]
        keys = list(late["hist"])
        fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.9 * len(keys)), sharex=True)
        if len(keys) == 1:
            axes = [axes]
        for ax, key in zip(axes, keys, strict=True):
            ax.bar(edges, late["hist"][key], width=bins["width"], align="edge")
            ax.axvline(0.0, color="red", linewidth=0.8)
            ax.set_title(f"{late['labels'][key]}: early {late['early'][key]:,}", fontsize=9)
            ax.set_ylabel("timers")
        axes[-1].set_xlabel("ms after the deadline (red: the deadline; left of it: early)")
        fig.tight_layout()
        path = out / "lateness.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

"""PNG plots of bench reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recengine._deps import require

from .report import ordered_models


def _plt() -> Any:
    matplotlib = require("matplotlib", "Bench plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def quality_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """quality_bars.png: test NDCG@10, HR@10 and cold Recall@20 (hybrid and cold-only) per model."""
    plt = _plt()
    models = report["models"]
    names = ordered_models(models)
    metrics = [m for m in ("ndcg@10", "hr@10", "cold_recall@20", "coldonly_recall@20")
               if any(m in models[n] for n in names)]
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(names) + 2), 4.5))
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(names))
    for j, metric in enumerate(metrics):
        vals = [models[n].get(metric) or 0.0 for n in names]
        ax.bar(x + (j - (len(metrics) - 1) / 2) * width, vals, width, label=metric)
    best = report.get("best_baseline", {}).get("ndcg@10")
    if best:
        ax.axhline(best, color="grey", linestyle="--", linewidth=1, label="best baseline NDCG@10")
        ax.axhline(1.1 * best, color="red", linestyle=":", linewidth=1, label="target 1.10x")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("test metric")
    ax.set_title(f"Quality on {report['data']['name']} (full ranking, leave-last-out)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(directory) / "quality_bars.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def latency_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """latency_cdf.png (one panel per stage, batch 1 single-thread) and recall_vs_ef.png."""
    plt = _plt()
    out: list[Path] = []
    samples = report.get("samples_ms", {})
    stages = [s for s in ("tokenize", "encode", "user_tower", "retrieve", "score", "recommend")
              if any(k.startswith(f"{s}|") for k in samples)]
    if stages:
        cols = 3
        rows = -(-len(stages) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, stage in zip(axes.flat, stages):
            for key, vals in samples.items():
                s, variant, batch = key.split("|")
                if s != stage or batch != "1" or not vals:
                    continue
                v = np.sort(np.asarray(vals))
                ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=variant)
            ax.set_xscale("log")
            ax.set_title(f"{stage} (batch 1, 1 thread)")
            ax.set_xlabel("latency (ms, log)")
            ax.set_ylabel("CDF")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(stages):]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(directory) / "latency_cdf.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    curve = report.get("recall_curve", [])
    if curve:
        k = next((key for key in curve[0] if key.startswith("recall@")), "recall@10")
        fig, ax = plt.subplots(figsize=(6.5, 4))
        forms = sorted({c.get("index", "hnsw") for c in curve})
        for form in forms:
            pts = [c for c in curve if c.get("index", "hnsw") == form]
            ax.plot([c["ef"] for c in pts], [c[k] for c in pts], marker="o", label=f"{k} ({form})")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("HNSW ef")
        ax.set_ylabel(f"{k} vs exact")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if any("p50_ms_batch1" in c for c in curve):
            ax2 = ax.twinx()
            for form in forms:
                pts = [c for c in curve if c.get("index", "hnsw") == form]
                ax2.plot([c["ef"] for c in pts], [c.get("p50_ms_batch1") for c in pts], linestyle="--",
                         marker="s", alpha=0.6)
            ax2.set_ylabel("p50 ms, batch 1 (dashed)")
        ax.set_title(f"HNSW recall vs ef ({curve[0]['n_items']} items)")
        fig.tight_layout()
        path = Path(directory) / "recall_vs_ef.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out

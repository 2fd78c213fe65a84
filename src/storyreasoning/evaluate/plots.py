"""PNG plots of an evaluation (matplotlib, the ``eval`` extra; headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError(
            "plots need matplotlib: pip install 'storyreasoning[eval]' (or pass --no-plots)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# The headline rates of each family (every number is in metrics.json and metrics.md).
HEADLINE = {
    "grounding": (
        "precision_micro",
        "recall_micro",
        "f1_micro",
        "f1_characters_micro",
        "f1_objects_micro",
        "map",
    ),
    "identity": (
        "idf1_micro",
        "idf1_characters_micro",
        "idf1_objects_micro",
        "link_precision_micro",
        "link_recall_micro",
    ),
    "consistency": (
        "well_structured_rate",
        "char_persistence_ge2",
        "pronoun_grounding_char",
        "pronoun_grounding_any",
    ),
    "language": ("bleu_1", "bleu_4", "meteor", "meteor_exact", "rouge_l"),
}


def headline(family: str, overall: dict) -> dict[str, float]:
    """The family's headline rates that have a value."""
    return {
        key: float(overall[key])
        for key in HEADLINE.get(family, ())
        if isinstance(overall.get(key), (int, float)) and not isinstance(overall.get(key), bool)
    }


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()
    return path


def report_plots(report, folder: Path) -> list[Path]:
    """metrics.png (rates of every family), persistence.png and pronouns.png when consistency ran."""
    plt = _pyplot()
    written: list[Path] = []
    bars = {
        f"{family}.{key}": value
        for family, scores in report.results.items()
        for key, value in headline(family, scores.overall).items()
    }
    if bars:
        fig, ax = plt.subplots(figsize=(8, max(2.5, 0.28 * len(bars))))
        names = list(bars)[::-1]
        ax.barh(names, [bars[n] for n in names], color="#4361ee")
        ax.set_xlim(0, 1)
        ax.set_xlabel("score")
        ax.set_title(f"{report.run.get('label', '')}: metrics")
        ax.tick_params(axis="y", labelsize=7)
        written.append(_save(fig, folder / "metrics.png"))
        plt.close(fig)
    consistency = report.results.get("consistency")
    if consistency is not None:
        extra = consistency.extra
        persistence = (extra.get("persistence") or {}).get("cot") or {}
        reference = ((extra.get("reference") or {}).get("persistence") or {}).get("cot") or {}
        if persistence:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for kind, colour in (("characters", "#4361ee"), ("objects", "#f72585")):
                curve = persistence.get(kind) or {}
                if curve.get("n"):
                    ax.plot(curve["n"], curve["macro"], marker="o", label=kind, color=colour)
                ref = reference.get(kind) or {}
                if ref.get("n"):
                    ax.plot(
                        ref["n"],
                        ref["macro"],
                        linestyle="--",
                        color=colour,
                        alpha=0.5,
                        label=f"{kind} (reference)",
                    )
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("present in at least N frames")
            ax.set_ylabel("share of entities (mean over stories)")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=8)
            ax.set_title("Persistence (CoT)")
            written.append(_save(fig, folder / "persistence.png"))
            plt.close(fig)
        pronouns = extra.get("pronouns") or {}
        if pronouns:
            words = list(pronouns)
            fig, ax = plt.subplots(figsize=(7, 3.5))
            width = 0.4
            xs = range(len(words))
            for offset, rule, colour in ((-width / 2, "char", "#4361ee"), (width / 2, "any", "#4cc9f0")):
                rates = [pronouns[w].get(f"rate_{rule}") or 0.0 for w in words]  # None (no occurrence) → 0
                ax.bar(
                    [x + offset for x in xs],
                    rates,
                    width,
                    label="character rule" if rule == "char" else "any-entity rule",
                    color=colour,
                )
            ax.set_xticks(list(xs), words)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("grounded share")
            ax.legend(fontsize=8)
            ax.set_title("Pronoun grounding")
            written.append(_save(fig, folder / "pronouns.png"))
            plt.close(fig)
    return written


def compare_plot(labels: list[str], keys: list[str], values: list[dict], path: Path) -> Path | None:
    """Grouped horizontal bars: one group per rate metric, one bar per run."""
    plt = _pyplot()
    # the headline rates when no --metrics narrowed the keys; else every rate among them
    headline_keys = [f"{family}.{key}" for family, names in HEADLINE.items() for key in names]
    chosen = [k for k in headline_keys if k in keys] if len(keys) > 40 else keys
    rates = [
        k
        for k in chosen
        if any(v.get(k) is not None for v in values)
        and all(
            isinstance(v.get(k), (int, float)) and 0 <= v.get(k) <= 1 for v in values if v.get(k) is not None
        )
    ][:30]
    if not rates:
        return None
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(rates) * max(1, len(labels) / 2))))
    height = 0.8 / len(labels)
    palette = ["#4361ee", "#f72585", "#4cc9f0", "#7209b7", "#3a0ca3", "#fb8500"]
    for i, label in enumerate(labels):
        ys = [j + i * height for j in range(len(rates))]
        ax.barh(
            ys, [values[i].get(k) or 0.0 for k in rates], height, label=label, color=palette[i % len(palette)]
        )
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(rates))], rates, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Runs compared")
    out = _save(fig, path)
    plt.close(fig)
    return out

"""PNG plots of an evaluation (matplotlib, the ``eval`` extra; drawn with the Agg renderer).

Figures are made with matplotlib's object API (``Figure``, no ``pyplot``: no global
state, no GUI backend to pick, and a lighter import). matplotlib is imported only to
draw. A :class:`Painter` draws a report's plots, here or in a process of its own: one
started with the scoring workers imports matplotlib while the stories are parsed and
draws the consistency plots while this process computes the language metrics.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from ..errors import UsageError
from .pairs import Scores
from .processes import executor


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "plots need matplotlib: pip install 'storyreasoning[eval]' (or pass --no-plots)"
        ) from None
    return Figure


def _import_matplotlib() -> None:
    """Import what drawing needs (the figure, the Agg canvas savefig uses, tickers); errors wait for drawing."""
    for module in ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.ticker"):
        try:
            importlib.import_module(module)
        except Exception:  # drawing imports it again and says what is wrong
            return


class Painter:
    """Draws a report's plots: metrics.png, then the consistency plots, in :meth:`paths`' order.

    ``process=True`` draws in a process of its own (forked on Linux: make it before
    starting any thread, and give it the pipes to Java and a lower priority, as
    :class:`.scoring.Pool`),
    which imports matplotlib at once;
    each plot is then drawn there while this process goes on. Otherwise plots are drawn
    here, when asked.
    """

    def __init__(self, *, process: bool = False, close_fds: Sequence[int] = (), nice: int = 0) -> None:
        self._executor: ProcessPoolExecutor | None = None
        if process:  # see .processes for close_fds and nice
            self._executor = executor(1, close_fds=close_fds, nice=nice)
            self._executor.submit(_import_matplotlib)
        self._metrics: Future | list[Path] | None = None
        self._consistency: Future | list[Path] | None = None

    @property
    def in_process(self) -> bool:
        return self._executor is not None

    def _run(self, fn, *args) -> Future | list[Path]:
        if self._executor is not None:
            return self._executor.submit(fn, *args)
        return fn(*args)

    def consistency(self, results: dict[str, Scores], folder: Path) -> None:
        """Draw (or start drawing) the consistency plots when ``results`` has the family; once."""
        scores = results.get("consistency")
        if self._consistency is None and scores is not None:
            keep = ("persistence", "reference", "pronouns")  # what the plots read, not the per-story details
            light = Scores(
                scores.family,
                dict(scores.overall),
                extra={k: scores.extra[k] for k in keep if k in scores.extra},
            )
            self._consistency = self._run(consistency_plots, light, folder)

    def metrics(self, report, folder: Path) -> None:
        """Draw (or start drawing) metrics.png."""
        light = SimpleNamespace(  # what metrics_plot reads of a Report
            run={"label": report.run.get("label", "")},
            results={name: Scores(name, dict(s.overall)) for name, s in report.results.items()},
        )
        self._metrics = self._run(metrics_plot, light, folder)

    def paths(self) -> list[Path]:
        """Every plot drawn, waiting for those still being drawn."""
        out: list[Path] = []
        for drawn in (self._metrics, self._consistency):
            if isinstance(drawn, Future):
                drawn = drawn.result()
            out += drawn or []
        return out

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Every plot a report may have in its plots/ folder (:func:`.report.write_report` removes an earlier
#: evaluation's that this one did not draw).
PLOT_FILES = ("metrics.png", "persistence.png", "pronouns.png")

# The rates metrics.png draws, per family (every number is in metrics.json and metrics.md; the
# headline a report leads with is report.HEADLINE).
RATES = {
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


def rates(family: str, overall: dict) -> dict[str, float]:
    """The family's rates (of :data:`RATES`) that have a value."""
    return {
        key: float(overall[key])
        for key in RATES.get(family, ())
        if isinstance(overall.get(key), (int, float)) and not isinstance(overall.get(key), bool)
    }


def metric_bars(results: dict) -> dict[str, float]:
    """metrics.png's bars: ``family.key -> rate`` over the families of ``results`` (name -> Scores)."""
    return {
        f"{family}.{key}": value
        for family, scores in results.items()
        for key, value in rates(family, scores.overall).items()
    }


def persistence_curves(extra: dict) -> dict[str, tuple[dict, dict]]:
    """persistence.png's curves: kind -> (the candidates' curve, the references'), kinds with a point only."""
    persistence = (extra.get("persistence") or {}).get("cot") or {}
    reference = ((extra.get("reference") or {}).get("persistence") or {}).get("cot") or {}
    out = {}
    for kind in ("characters", "objects"):
        curve, ref = persistence.get(kind) or {}, reference.get(kind) or {}
        if curve.get("n") or ref.get("n"):
            out[kind] = (curve, ref)
    return out


def pronoun_rates(extra: dict) -> dict[str, dict]:
    """pronouns.png's groups: the pronouns with a grounding rate (found at least once)."""
    pronouns = extra.get("pronouns") or {}
    return {
        word: rates
        for word, rates in pronouns.items()
        if isinstance(rates, dict) and any(rates.get(f"rate_{rule}") is not None for rule in ("char", "any"))
    }


def empty_plots(results: dict) -> list[str]:
    """What a report says instead of drawing an empty figure: one "no data for …" line per plot
    of ``results`` (family name -> Scores) that has nothing to draw (and is therefore not written)."""
    notes = []
    if not metric_bars(results):
        notes.append("no data for metrics.png: no family has a rate to draw")
    consistency = results.get("consistency")
    if consistency is not None:
        if not persistence_curves(consistency.extra):
            notes.append("no data for persistence.png: no CoT names a character or an object")
        if not pronoun_rates(consistency.extra):
            notes.append("no data for pronouns.png: no story uses a pronoun the metric counts")
    return notes


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()
    return path


def _figure(Figure, figsize: tuple[float, float]):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def report_plots(report, folder: Path) -> list[Path]:
    """metrics.png (rates of every family), persistence.png and pronouns.png when consistency ran."""
    written = metrics_plot(report, folder)
    consistency = report.results.get("consistency")
    if consistency is not None:
        written += consistency_plots(consistency, folder)
    return written


def metrics_plot(report, folder: Path) -> list[Path]:
    """metrics.png: the rates of every family (none when no family has one: see :func:`empty_plots`)."""
    bars = metric_bars(report.results)
    if not bars:
        return []
    fig, ax = _figure(_figure_class(), (8, max(2.5, 0.28 * len(bars))))
    names = list(bars)[::-1]
    ax.barh(names, [bars[n] for n in names], color="#4361ee")
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    ax.set_title(f"{report.run.get('label', '')}: metrics")
    ax.tick_params(axis="y", labelsize=7)
    return [_save(fig, folder / "metrics.png")]


def consistency_plots(consistency, folder: Path) -> list[Path]:
    """persistence.png and pronouns.png from the consistency family's scores, each only when it has
    data (:func:`empty_plots` says which do not)."""
    written: list[Path] = []
    extra = consistency.extra
    curves = persistence_curves(extra)
    pronouns = pronoun_rates(extra)
    if not curves and not pronouns:
        return written
    Figure = _figure_class()
    if curves:
        fig, ax = _figure(Figure, (6, 3.5))
        for kind, colour in (("characters", "#4361ee"), ("objects", "#f72585")):
            curve, ref = curves.get(kind) or ({}, {})
            if curve.get("n"):
                ax.plot(curve["n"], curve["macro"], marker="o", label=kind, color=colour)
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
    if pronouns:
        words = list(pronouns)
        fig, ax = _figure(Figure, (7, 3.5))
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
    return written


def compare_plot(labels: list[str], keys: list[str], values: list[dict], path: Path) -> Path | None:
    """Grouped horizontal bars: one group per rate metric, one bar per run; None (nothing written)
    when no metric is a rate any run has."""
    # the headline rates when no --metrics narrowed the keys; else every rate among them
    headline_keys = [f"{family}.{key}" for family, names in RATES.items() for key in names]
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
    fig, ax = _figure(_figure_class(), (8, max(3, 0.35 * len(rates) * max(1, len(labels) / 2))))
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
    return _save(fig, path)

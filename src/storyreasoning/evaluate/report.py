"""Evaluating a run against a dataset and writing the report.

:func:`evaluate_pairs` runs the chosen metric families; :func:`write_report` writes

    metrics.json     every overall number, the conventions behind it, the run and dataset
    metrics.md       the same as markdown tables (ready for a paper's appendix or a PR)
    per_story.csv    one row per story id, one column per per-story number
    plots/*.png      metric bars, persistence distribution, per-pronoun grounding

:func:`compare` puts several evaluated runs side by side (a markdown table and a plot).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import UsageError, file_error, json_kind
from ..files import TooLarge, open_atomic, read_bounded, write_json_atomic, write_text_atomic
from .pairs import Scores, StoryPair

FAMILIES = ("grounding", "identity", "consistency", "language")
METRICS_FILE = "metrics.json"
JUDGE_SUMMARY = Path("judge") / "summary.json"  # in a run folder, written by ``evaluate judge``
#: In a run folder: ``{"out": FOLDER}``, where ``evaluate judge RUN --out FOLDER`` last judged the run
#: (outside RUN/judge); compare, evaluate and the studio read the judge summary there
JUDGE_LOCATION = "judge-location.json"


# -- the headline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadlineMetric:
    """One number a report leads with.

    ``key``: ``family.name``, an overall number of ``metrics.json`` (its ``metrics.family.overall.name``),
    or ``judge.name``, a score of the run's ``judge/summary.json`` (``scores.name``: mean and
    interval); ``story``: its ``per_story.csv`` column where a story has one (the studio's
    per-story headline); ``kind``: how it reads: ``rate`` (0 to 1), ``percent`` (a rate shown
    as a percentage), ``count`` (a mean count), ``judge`` (a mean with its interval).
    """

    key: str
    label: str
    story: str | None = None
    kind: str = "rate"

    @property
    def family(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


#: The one headline: ``evaluate`` and ``evaluate compare`` print it first, metrics.md and
#: compare.md lead with it, the studio's run page shows it (served by ``/api/runs``).
HEADLINE: tuple[HeadlineMetric, ...] = (
    HeadlineMetric("consistency.well_structured_rate", "well-structured", "consistency.well_structured", "percent"),
    HeadlineMetric("grounding.f1_micro", "grounding F1", "grounding.f1"),
    HeadlineMetric("grounding.map", "grounding mAP"),
    HeadlineMetric("identity.idf1_micro", "identity F1", "identity.idf1"),
    HeadlineMetric("consistency.pronoun_grounding_char", "pronoun grounding"),
    HeadlineMetric("consistency.hallucinations_per_story", "hallucinations / story (structural)", kind="count"),
    HeadlineMetric("language.meteor", "METEOR", "language.meteor"),
    HeadlineMetric("judge.creativity", "creativity (judge, 1-5)", kind="judge"),
    HeadlineMetric("judge.coherence", "coherence (judge, 1-5)", kind="judge"),
    HeadlineMetric("judge.grounding_quality", "grounding quality (judge, 1-5)", kind="judge"),
    HeadlineMetric("judge.hallucinations", "hallucinations / story (judge)", kind="judge"),
)  # fmt: skip


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def headline_rows(report: dict, judge: dict | None = None) -> list[dict]:
    """The headline of one evaluation (``report``: a metrics.json as a dict; ``judge``: the run's
    judge summary, else the one recorded in the report): one row per :data:`HEADLINE` metric
    whose family was evaluated, ``{key, label, kind, story, value, low, high, n, reference, note}``.

    ``reference`` is the reference dataset's own value where the report has it (the consistency
    family scores the references too); ``low``/``high``/``n`` are a judge score's interval and
    count; ``note`` says why a value is missing where that is not obvious.
    """
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    judge = judge if judge is not None else report.get("judge")
    scores = (judge or {}).get("scores") if isinstance(judge, dict) else None
    rows = []
    for metric in HEADLINE:
        row = {"key": metric.key, "label": metric.label, "kind": metric.kind, "story": metric.story,
               "value": None, "low": None, "high": None, "n": None, "reference": None, "note": None}  # fmt: skip
        if metric.family == "judge":
            score = scores.get(metric.name) if isinstance(scores, dict) else None
            if not isinstance(score, dict):
                continue
            row.update({k: _number(score.get(k)) for k in ("low", "high")}, value=_number(score.get("mean")))
            row["n"] = score.get("n") if isinstance(score.get("n"), int) else None
        else:
            family = metrics.get(metric.family)
            if not isinstance(family, dict):
                continue
            row["value"] = _number((family.get("overall") or {}).get(metric.name))
            extra = family.get("extra") if isinstance(family.get("extra"), dict) else {}
            reference = extra.get("reference") if isinstance(extra.get("reference"), dict) else {}
            row["reference"] = _number((reference.get("overall") or {}).get(metric.name))
            if metric.key == "language.meteor" and row["value"] is None and extra.get("backend") == "python":
                row["note"] = "no METEOR 1.5 without Java (python backend); meteor_exact is in --all"
        rows.append(row)
    return rows


def headline_cell(row: dict, which: str = "value") -> str:
    """A headline value as a person reads it: rates to 4 places, percentages, a judge mean with [low, high]."""
    value = row.get(which)
    if value is None:
        return "–"
    kind = row.get("kind")
    if kind == "percent":
        return f"{100 * value:.1f}%"
    if kind == "count":
        return f"{value:.2f}"
    if kind == "judge":
        if which == "value" and row.get("low") is not None and row.get("high") is not None:
            return f"{value:.2f} [{row['low']:.2f}, {row['high']:.2f}]"
        return f"{value:.2f}"
    return f"{value:.4f}"


def output_counts(report: dict) -> tuple[int, int] | None:
    """The stories scored and how many of them have no output. ``report``: a metrics.json as a dict:
    its ``dataset.stories`` and ``dataset.missing``, else the ``n_stories`` and ``n_missing`` the
    consistency or language family counts (a report written before evaluate recorded the first);
    None when none of them says."""
    dataset = report.get("dataset") if isinstance(report.get("dataset"), dict) else {}
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    counted = [(dataset.get("stories"), dataset.get("missing"))]
    for name in ("consistency", "language"):
        family = metrics.get(name) if isinstance(metrics.get(name), dict) else {}
        overall = family.get("overall") if isinstance(family.get("overall"), dict) else {}
        counted.append((overall.get("n_stories"), overall.get("n_missing")))
    for stories, missing in counted:
        if type(stories) is int and type(missing) is int and 0 <= missing <= stories:  # not bool
            return stories, missing
    return None


def outputs_line(report: dict) -> str | None:
    """How many of the stories scored have an output, and how the missing ones were scored: what the
    headline says beside its rates, so that a partial run's are not read as a whole run's. ``report``:
    a metrics.json as a dict (its :func:`output_counts` and ``protocol``); None when it does not say."""
    counts = output_counts(report)
    if counts is None:
        return None
    stories, missing = counts
    line = f"{stories - missing} of {stories} stories have an output"
    if not missing:
        return line
    rule = (
        "left out, as the original did"
        if report.get("protocol") == "original"
        else "scored as empty outputs (not well-structured, zero recall)"
    )
    return f"{line}; the {missing} missing {'is' if missing == 1 else 'are'} {rule}"


def language_signature(report: dict) -> str | None:
    """Which tokenizer and METEOR made a report's BLEU, METEOR, ROUGE-L and CIDEr (Java METEOR 1.5 or
    the python backend's meteor_exact), so that two reports' language numbers can be compared: its
    ``metrics.language.extra.signature`` (``report``: a metrics.json as a dict); None when the
    language metrics were not scored."""
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    language = metrics.get("language") if isinstance(metrics.get("language"), dict) else {}
    extra = language.get("extra") if isinstance(language.get("extra"), dict) else {}
    signature = extra.get("signature")
    return signature if isinstance(signature, str) and signature else None


def headline_markdown(rows: list[dict], outputs: str | None = None) -> list[str]:
    """The headline of one evaluation as a markdown table (a reference column when any row has one),
    ``outputs`` (:func:`outputs_line`) the first line under it."""
    if not rows:
        return ["(no headline metric was evaluated)"] + (["", f"- {outputs}"] if outputs else [])
    with_reference = any(row["reference"] is not None for row in rows)
    lines = ["| metric | value |" + (" reference |" if with_reference else ""),
             "|---|---|" + ("---|" if with_reference else "")]  # fmt: skip
    for row in rows:
        cells = [row["label"], headline_cell(row)] + (
            [headline_cell(row, "reference")] if with_reference else []
        )
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {row['label']}: {row['note']}" for row in rows if row.get("note")]
    if with_reference:
        notes.insert(0, "- reference: the reference dataset's own outputs scored the same way")
    if outputs:
        notes.insert(0, f"- {outputs}")
    return lines + (["", *notes] if notes else [])


# -- scoring conventions ----------------------------------------------------------------------------

#: Each convention and the headline families its difference makes incomparable.
CONVENTIONS = {
    "dataset": ("grounding", "identity", "consistency", "language", "judge"),
    "protocol": ("grounding", "identity", "consistency", "language"),
    "language backend": ("language",),
    "judge model": ("judge",),
    "judge prompt": ("judge",),
}


def conventions(report: dict, judge: dict | None = None) -> dict[str, str | None]:
    """How an evaluation was scored, as compare checks it: ``CONVENTIONS`` name -> value (None: not scored)."""
    recorded = report.get("conventions") if isinstance(report.get("conventions"), dict) else {}
    dataset = report.get("dataset") if isinstance(report.get("dataset"), dict) else {}
    language = (report.get("metrics") or {}).get("language")
    backend = ((language or {}).get("extra") or {}).get("backend") if isinstance(language, dict) else None
    judge = judge if judge is not None else report.get("judge")
    about = (judge or {}).get("judge") if isinstance(judge, dict) else None
    about = about if isinstance(about, dict) else {}
    prompt = None
    if about.get("prompt_version") is not None or about.get("prompt_sha256"):
        prompt = f"{about.get('prompt_version')}" + (
            f" (sha256 {str(about['prompt_sha256'])[:12]})" if about.get("prompt_sha256") else ""
        )
    out = {
        "dataset": _dataset_value(_dataset_named(dataset), dataset, report),
        "protocol": report.get("protocol"),
        "language backend": backend if backend is not None else recorded.get("language backend"),
        "judge model": about.get("model"),
        "judge prompt": prompt,
    }
    # as text: a damaged file's list or object is a value that differs, not a crash of the comparison
    return {name: None if out.get(name) is None else str(out.get(name)) for name in CONVENTIONS}


def _dataset_named(dataset: dict) -> object:
    """A scored dataset as compare tells datasets apart: a local one by its resolved path (``./ds``,
    ``ds`` and ``/abs/ds`` are one), a hub id as given. A report of an older version recorded the
    source alone: a local path is resolved from here."""
    from ..files import local_path  # (not data.sources: compare starts without importing data)

    path = dataset.get("path")
    if isinstance(path, str) and path:
        return path
    return local_path(dataset.get("source")) or dataset.get("source")


def _dataset_value(named: object, dataset: dict, report: dict) -> str:
    """The dataset convention: the dataset as ``named``, its split and how many stories were scored."""
    return (
        f"{named}"
        + (f" split {dataset['split']}" if dataset.get("split") else "")
        + (f", {report['stories']} stories" if report.get("stories") is not None else "")
    )


def by_content(reports: list[dict], each: list[dict[str, str | None]]) -> list[dict[str, str | None]]:
    """``each`` (the reports' :func:`conventions`) with the dataset named by its content when every report
    recorded its dataset's fingerprint: one dataset at two paths (a project moved, a copy on another
    disk) is then scored alike. A report of an older version has none: paths decide for all."""
    found = [report.get("dataset") if isinstance(report.get("dataset"), dict) else {} for report in reports]
    prints = [d.get("fingerprint") for d in found]
    if not all(isinstance(p, dict) and p.get("ids_sha256") for p in prints):
        return each
    out = []
    for conv, dataset, report, fingerprint in zip(each, found, reports, prints, strict=True):
        # the content alone: the same dataset copied under another name is the same
        content = f"content {str(fingerprint.get('ids_sha256'))[:12]}, files {str(fingerprint.get('files_sha256'))[:12]}"
        out.append({**conv, "dataset": _dataset_value(content, dataset, report)})
    return out


def mismatches(labels: list[str], each: list[dict[str, str | None]]) -> dict[str, dict[str, str]]:
    """The conventions on which runs that were scored disagree: name -> {run label: value}."""
    out = {}
    for name in CONVENTIONS:
        values = {
            label: c.get(name) for label, c in zip(labels, each, strict=True) if c.get(name) is not None
        }
        if len(set(values.values())) > 1:
            out[name] = values
    return out


def mismatch_line(found: dict[str, dict[str, str]]) -> str:
    """``language backend: a=coco, b=python; protocol: …`` (one line)."""
    return "; ".join(
        f"{name}: " + ", ".join(f"{label}={value}" for label, value in values.items())
        for name, values in found.items()
    )


#: the most a judge summary is read to: its means, intervals and counts take a few kilobytes, so a
#: larger ``summary.json`` (or a link to a larger file) is none of the judge's and is not read whole
MAX_SUMMARY_BYTES = 1 << 20
#: the most ``RUN/judge-location.json`` (one path) is read to
MAX_POINTER_BYTES = 64 << 10


def judge_summary_path(run_folder: str | Path) -> Path:
    """Where the judge summary of the run in ``run_folder`` is: ``RUN/judge/summary.json``, or the
    ``summary.json`` of the folder ``RUN/judge-location.json`` names (:func:`.judge.record_location`).

    A run folder may come from elsewhere (downloaded, shared), and evaluate, evaluate compare and the
    studio read what its pointer names. So the pointer is followed only as :func:`.judge.record_location`
    writes it: an absolute path to a folder this judge wrote (``summary.json`` beside its
    ``settings.json``; not a run folder, which :func:`.judge.check_out` never judges into). Anything else
    is refused in one line naming the pointer and the fix, and from the folder named only
    ``summary.json`` is ever read, to :data:`MAX_SUMMARY_BYTES` (:func:`read_judge_summary`)."""
    folder = Path(run_folder)
    pointer = folder / JUDGE_LOCATION
    if not pointer.is_file():
        return folder / JUDGE_SUMMARY
    fix = f"run storyreasoning evaluate judge {folder} --out FOLDER again, or delete {pointer}"
    try:
        out = json.loads(read_bounded(pointer, MAX_POINTER_BYTES).decode("utf-8"))["out"]
        if not isinstance(out, str):
            raise TypeError(out)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise UsageError(f"{pointer} cannot be read; {fix}") from None
    shown = repr(out[:200]) if len(out) > 200 or not out.isprintable() else out
    if "\0" in out or not Path(out).is_absolute():
        raise UsageError(
            f"{pointer} names {shown}, not a folder evaluate judge wrote (an absolute path); {fix}"
        )
    from ..tell.run import MANIFEST, RECORDS  # here: tell.run loads the data package, which compare needs not

    there = Path(out)
    path = there / JUDGE_SUMMARY.name
    if not path.is_file():
        raise UsageError(
            f"{pointer} says the run was judged into {shown}, which holds no {JUDGE_SUMMARY.name}; run "
            f"storyreasoning evaluate judge {folder} --out {shown} again, or delete {pointer}"
        )
    if not (there / "settings.json").is_file() or any(
        (there / name).exists() for name in (MANIFEST, RECORDS)
    ):
        raise UsageError(
            f"{pointer} names {shown}, which is not a folder evaluate judge wrote (its {JUDGE_SUMMARY.name} has no "
            f"settings.json beside it, or it is a run folder), so it is not read; {fix}"
        )
    return path


def read_judge_summary(path: str | Path) -> dict:
    """The JSON object of a judge summary file (``summary.json``, ``pairwise_summary.json``), read to
    :data:`MAX_SUMMARY_BYTES` at most; one line naming the file when it is larger, not a regular file,
    not JSON or not an object."""
    fix = "run storyreasoning evaluate judge again"
    try:
        data = json.loads(read_bounded(path, MAX_SUMMARY_BYTES).decode("utf-8"))
    except TooLarge:
        raise UsageError(
            f"{path} is larger than {MAX_SUMMARY_BYTES >> 20} MiB, so it is no judge summary and is not "
            f"read; {fix}"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror or exc}); {fix}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} cannot be read (it is not UTF-8 text); {fix}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} cannot be read ({exc.msg}); {fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} holds no JSON object; {fix}")
    return data


def load_judge(folder: str | Path) -> dict | None:
    """The judge summary of the run in ``folder`` (:func:`judge_summary_path`), None when it has none;
    read to a bound (:func:`read_judge_summary`)."""
    path = judge_summary_path(folder)
    if not path.is_file():
        return None
    data = read_judge_summary(path)
    if not isinstance(data.get("scores"), dict):
        raise UsageError(f"{path} has no scores; run storyreasoning evaluate judge again")
    return data


def parse_families(text: str | None) -> tuple[str, ...]:
    """``"grounding,identity"`` → the families, in the canonical order; None or "all" → all."""
    if text is None or text.strip().lower() == "all":
        return FAMILIES
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in FAMILIES]
    if unknown or not chosen:
        raise UsageError(
            f"unknown metric famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(FAMILIES)} (comma-separated) or all"
        )
    return tuple(name for name in FAMILIES if name in chosen)


def evaluate_pairs(
    pairs: list[StoryPair],
    families: Iterable[str] = FAMILIES,
    *,
    protocol: str = "default",
    language_backend: str = "auto",
    on_family: Callable[[str], None] | None = None,
) -> dict[str, Scores]:
    """Run each metric family over ``pairs`` (parsed); :mod:`.scoring` does the same on raw texts, in workers."""
    from .scoring import story_parts, summarize

    families = tuple(families)
    items = [(pair.story_id, story_parts(pair, families, protocol)) for pair in pairs]
    return summarize(
        items, families, protocol=protocol, language_backend=language_backend, on_family=on_family
    )


@dataclass
class Report:
    """An evaluation: the run, the dataset, the protocol and each family's scores."""

    run: dict
    dataset: dict
    protocol: str
    results: dict[str, Scores]
    story_ids: list[str] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    judge: dict | None = None  # the run's judge/summary.json when it has one (its judge and scores)

    def to_dict(self) -> dict:
        out = {
            "storyreasoning": __version__,
            "created": self.created,
            "run": self.run,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "stories": len(self.story_ids),
            "metrics": {
                name: {k: v for k, v in s.to_dict().items() if k != "per_story"}
                for name, s in self.results.items()
            },
        }
        if self.judge is not None:
            out["judge"] = {"judge": self.judge.get("judge"), "scores": self.judge.get("scores")}
        # what compare checks before it puts two evaluations side by side
        out["conventions"] = conventions(out)
        return out

    def headline(self) -> list[dict]:
        """:func:`headline_rows` of this report."""
        return headline_rows(self.to_dict())

    def outputs_line(self) -> str | None:
        """:func:`outputs_line` of this report."""
        return outputs_line({"dataset": self.dataset, "protocol": self.protocol})

    def language_signature(self) -> str | None:
        """:func:`language_signature` of this report."""
        return language_signature({"metrics": {name: {"extra": s.extra} for name, s in self.results.items()}})

    def flat(self) -> dict[str, float | None]:
        """``family.metric -> value`` over every family (what compare tables show)."""
        return {
            f"{name}.{key}": value for name, s in self.results.items() for key, value in s.overall.items()
        }


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}"
    return str(value)


def markdown(report: Report, notes: Iterable[str] = ()) -> str:
    """The report as markdown: the headline, what was scored, one table per family with its
    conventions, and ``notes`` (the plots that had nothing to draw)."""
    run = report.run
    lines = [
        f"# Evaluation of {run.get('label', run.get('path', 'a run'))}",
        "",
        *headline_markdown(report.headline(), report.outputs_line()),
        "",
        f"- run: `{run.get('path')}` ({run.get('outputs', 0)} outputs, {run.get('failed', 0)} failed)",
        f"- dataset: `{report.dataset.get('source')}`, "
        + (f"split `{report.dataset['split']}`, " if report.dataset.get("split") else "all splits, ")
        + f"{len(report.story_ids)} stories",
        f"- protocol: `{report.protocol}`",
        f"- storyreasoning {__version__}, {report.created}",
    ]
    teller = run.get("teller") or {}
    if teller:
        lines.append(
            f"- teller: {', '.join(f'{k}={v}' for k, v in teller.items() if not isinstance(v, dict))}"
        )
    for name, scores in report.results.items():
        lines += ["", f"## {name.capitalize()}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in scores.overall.items()]
        signature = scores.extra.get("signature") if isinstance(scores.extra, dict) else None
        if signature:
            lines += ["", f"Signature: `{signature}`"]
        if scores.conventions:
            lines += [""] + [f"- {rule}" for rule in scores.conventions]
    notes = list(notes)
    if notes:
        lines += ["", "## Plots", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def per_story_rows(report: Report) -> tuple[list[str], list[list]]:
    """per_story.csv's columns (``story_id``, then ``family.key`` in the order the keys first
    appear) and one row per story, in those columns (``""`` for None and for a key a story lacks)."""
    columns, rows = _per_story_table(report)
    return columns, list(rows)


def _per_story_table(report: Report) -> tuple[list[str], Iterator[list]]:
    """:func:`per_story_rows`, the rows made one at a time as they are read: at 20,000 stories, all
    of them at once were the largest thing the run made while writing its report (about 15 MB)."""
    keys: dict[str, dict[str, int]] = {}  # family -> key -> column
    columns = ["story_id"]
    for name, scores in report.results.items():
        family = keys.setdefault(name, {})
        for row in scores.per_story.values():
            for key in row:
                if key not in family:
                    family[key] = len(columns)
                    columns.append(f"{name}.{key}")
    width = len(columns)

    def rows() -> Iterator[list]:
        for sid in report.story_ids:
            row: list = [""] * width
            row[0] = sid
            for name, scores in report.results.items():
                column = keys[name]
                for key, value in scores.per_story.get(sid, {}).items():
                    if value is not None:
                        row[column[key]] = value
            yield row

    return columns, rows()


def write_report(report: Report, out: Path, *, plots: bool = True, painter=None) -> list[Path]:
    """Write metrics.json, metrics.md, per_story.csv and the plots into ``out``; the paths written.

    ``painter``: a :class:`.plots.Painter` that may hold plots drawn (or being drawn)
    already; metrics.png is started first, so a painter in a process of its own draws it
    while the files are written.
    """
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if plots:
        from .plots import Painter, empty_plots

        painter = painter or Painter()
        painter.metrics(report, out / "plots")
        painter.consistency(report.results, out / "plots")
        notes = empty_plots(report.results)
    written = []
    path = out / METRICS_FILE
    write_json_atomic(path, report.to_dict())
    written.append(path)
    path = out / "metrics.md"
    write_text_atomic(path, markdown(report, notes))
    written.append(path)
    columns, rows = _per_story_table(report)
    path = out / "per_story.csv"
    with open_atomic(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    written.append(path)
    drawn = painter.paths() if plots else []
    from .plots import PLOT_FILES

    for name in set(PLOT_FILES) - {path.name for path in drawn}:
        # an earlier evaluation's plot this one did not draw would contradict the report
        (out / "plots" / name).unlink(missing_ok=True)
    return written + drawn


def load_report(path: str | Path) -> dict:
    """A written ``metrics.json``: ``path`` is the file, its folder, or a run folder holding ``eval/``.

    Refused (:class:`UsageError`, naming the file) unless it is UTF-8 JSON of the shape evaluate
    writes, as far as compare and the headline read it (:func:`_report_problem`).
    """
    path = Path(path)
    for candidate in (path, path / METRICS_FILE, path / "eval" / METRICS_FILE):
        if candidate.is_file():
            try:
                report = json.loads(candidate.read_text(encoding="utf-8"))
            except OSError as exc:
                raise file_error(
                    exc, "read the report", fix="make it readable, or evaluate the run again"
                ) from None
            except UnicodeDecodeError:
                raise UsageError(f"{candidate} is not UTF-8 text; evaluate the run again") from None
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{candidate} is not valid JSON ({exc.msg}); evaluate the run again"
                ) from None
            problem = _report_problem(report)
            if problem is not None:
                raise UsageError(
                    f"{candidate} is not a report as evaluate writes it ({problem}); evaluate the run again"
                )
            return report  # type: ignore[no-any-return]
    raise UsageError(
        f"no {METRICS_FILE} in {path}; evaluate it first: storyreasoning evaluate {path} --dataset …"
    )


def _report_problem(report: object) -> str | None:
    """What keeps a parsed metrics.json from being read as evaluate wrote it; None when nothing does.

    Checked: what compare, :func:`conventions` and :func:`headline_rows` read without checking
    its type: an object whose ``metrics`` is an object of families, each an object, whose
    ``overall`` and ``extra`` (and ``extra.reference.overall``) are objects where present;
    ``run`` an object or null, its ``path`` and ``label`` strings or null.
    """
    if not isinstance(report, dict):
        return f"it holds {json_kind(report)}, not an object"
    metrics = report.get("metrics")
    if not isinstance(metrics, dict):
        return "it has no metrics" if metrics is None else f"metrics is {json_kind(metrics)}, not an object"
    for family, data in metrics.items():
        where = f"metrics.{family}"
        if not isinstance(data, dict):
            return f"{where} is {json_kind(data)}, not an object"
        for key in ("overall", "extra"):
            if key in data and not isinstance(data[key], dict) and not (key == "extra" and data[key] is None):
                return f"{where}.{key} is {json_kind(data[key])}, not an object"
        reference = (data.get("extra") or {}).get("reference")
        if isinstance(reference, dict) and reference.get("overall") is not None:
            if not isinstance(reference["overall"], dict):
                return f"{where}.extra.reference.overall is {json_kind(reference['overall'])}, not an object"
    run = report.get("run")
    if run is not None:
        if not isinstance(run, dict):
            return f"run is {json_kind(run)}, not an object"
        for key in ("path", "label"):
            if run.get(key) is not None and not isinstance(run[key], str):
                return f"run.{key} is {json_kind(run[key])}, not a string"
    return None

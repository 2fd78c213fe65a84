"""Preference pairs for DPO: several outputs per story, scored by the reward, best against worst.

QwenStoryteller2 trained on "offline preference pairs generated from the reward
function". Here the outputs come from runs (``storyreasoning tell-dataset`` folders, or
folders of ``{story_id}.txt``), for example the same model sampled with several seeds,
over real stories and over contrastive sequences (``storyreasoning data contrastive``);
the dataset's own reference output can join as one more candidate. For each story every
candidate is scored with :class:`~storyreasoning.train.reward.StoryScorer`; the best
becomes ``chosen`` and the worst ``rejected`` when their rewards differ by at least
``min_margin``. Ties keep the earlier candidate (runs in the order given, the reference
last), so the same inputs always give the same pairs.

**Conditioning.** DPO scores a pair under a prompt; it must be the prompt the candidates
were sampled with. A run folder records it (``manifest.json``: the user prompt, the
system prompt, the order of frames and prompt, the teller's pixel budget), and each of
its records the generation's ``finish_reason``. Every pair carries that
``conditioning`` and both sides' finish reasons, and ``train dpo`` builds the pair's
prompt from it. A folder of ``{story_id}.txt`` records nothing: its outputs are taken as
told with the default prompt, system prompt and order (what ``tell-dataset`` uses when
not told otherwise) and no pixel budget (``train dpo`` then uses its own); the manifest
says so for each such run (``conditioning.recorded: false``).

Our rule where the issue is open: **chosen and rejected are only ever paired within
one conditioning.** Candidates are grouped by their run's conditioning (prompt, system
prompt, order, pixel budget); pairs are made inside each group, never across, because
the log-probability of an answer under another prompt than its own says nothing about
the answer. The dataset's reference output was not sampled under any prompt (SFT
learns it under all of them), so it joins every group. When a story's candidates span
several groups, the pairs with the largest margins are kept, from whichever group.

**Multi-sample runs** (``tell-dataset --samples N``: N candidates a story in one record)
give N candidates a story, each as if it came from a run of its own, labelled
``LABEL#k`` (k from 0, the order the server numbered them); they share the run's
conditioning, so they are paired with one another.

**Truncated candidates** (``finish_reason == "length"``: cut off at the token limit)
are left out before scoring and counted, per run, in the manifest: trained as a
complete answer they would get an end-of-turn token they never produced.

**Several pairs per story** (``pairs_per_story``): the best candidate against each of
the ``N`` worst, worst first, each pair still at least ``min_margin`` apart.
**Rejected among well-structured candidates** (``rejected="well-structured"``): the
rejected side is drawn only from outputs the format validator calls well-structured
for the story's frames, so a pair teaches grounding and re-identification rather than
the format SFT already taught; stories with no such candidate are skipped and counted.

The pairs folder (written as the stories are scored, so a crash or Ctrl-C loses at most the
story being scored; the same command resumes, see :func:`build_pairs`):

``settings.json``
    what the folder is made with (the command's settings), written before anything is
    scored; a resume with other settings is refused, naming each difference (a ``--run``
    by where it is: an older folder's relative one read from the current folder).
``dataset.json``
    the dataset the stories come from (:func:`~storyreasoning.data.identity.dataset_record`:
    the source as typed, the split, and for a local dataset its resolved path and a
    fingerprint of its content), written with the settings; a resume from another dataset
    is refused (``./ds`` and ``ds`` are one, a ``ds`` in another folder is another, a
    dataset moved whole is the same).
``stories.jsonl``
    one line per story scored, in the dataset's order: ``story_id``, how many ``pairs`` it
    gave, why none when it gave none (``skipped``: ``too_few``, ``too_close`` or
    ``no_rejected``), its truncated candidates per run and whether its candidates spanned
    several conditionings. A story counts as done once its line is written; a line
    scoring a story again (two builds that once wrote at once) ends the stories kept.
``pairs.jsonl``
    one pair per line: ``story_id``, ``chosen``/``rejected`` (raw outputs),
    ``chosen_from``/``rejected_from`` (run labels or ``reference``), their rewards with
    all components, the margin, every candidate's total, the ``conditioning`` (prompt,
    system, order, min_pixels, max_pixels, recorded) and ``chosen_finish_reason`` /
    ``rejected_finish_reason``.
``manifest.json``
    the dataset (as ``dataset.json``), the runs (each with its conditioning and how many of
    its outputs were truncated), the reward weights, the pairing options, and counts:
    stories seen, pairs made, stories skipped for too few candidates, too small a
    margin or no well-structured rejected candidate, truncated candidates. Written last:
    a folder without it is unfinished (``train dpo`` refuses it, saying to run the same
    ``train pairs`` command again to finish it).

``storyreasoning train dpo`` reads the folder back with the dataset for the frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import UsageError, file_error, json_kind
from ..files import remove_leftovers, write_json_atomic
from ..format.prompts import DEFAULT_PROMPT, ORDERS, SYSTEM_PROMPT
from ..settings import absolute, then_now
from .reward import RewardWeights, StoryScorer

PAIRS = "pairs.jsonl"
MANIFEST = "manifest.json"
STORIES = "stories.jsonl"
SETTINGS = "settings.json"
SKIPS = ("too_few", "too_close", "no_rejected")  # PairReport's lists of stories without a pair, by reason
REFERENCE = "reference"
TRUNCATED = "length"  # the finish reason of an output cut off at the token limit
Rejected = Literal["any", "well-structured"]
REJECTED = ("any", "well-structured")


@dataclass(frozen=True)
class Conditioning:
    """What a candidate was sampled under: the prompt, the system prompt, their order, the pixel budget.

    ``recorded`` is False when nothing was recorded (a folder of texts) and these are the
    defaults assumed. A pixel bound of None means "not recorded": DPO uses its own.
    """

    prompt: str | None = DEFAULT_PROMPT
    system: str | None = SYSTEM_PROMPT
    order: str = "images-first"
    min_pixels: int | None = None
    max_pixels: int | None = None
    recorded: bool = False

    def key(self) -> tuple:
        """What must be equal for two candidates to be paired (``recorded`` is not part of it)."""
        return (self.prompt, self.system, self.order, self.min_pixels, self.max_pixels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Conditioning:
        """A pair's ``conditioning`` back; a pair written before pairs carried one gets the defaults."""
        if not data:
            return cls()
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def run_conditioning(run) -> Conditioning:
    """The conditioning a run recorded (``manifest.json``: prompt and teller), or the defaults for texts."""
    manifest = run.manifest or {}
    prompt = manifest.get("prompt")
    teller = manifest.get("teller") or {}
    if not isinstance(prompt, dict):
        return Conditioning(
            min_pixels=_int(teller.get("min_pixels")), max_pixels=_int(teller.get("max_pixels"))
        )
    order = prompt.get("order") or "images-first"
    if order not in ORDERS:
        raise UsageError(f"run {run.path} records an unknown order {order!r}; its manifest.json is damaged")
    return Conditioning(
        prompt=prompt.get("text") if "text" in prompt else DEFAULT_PROMPT,
        system=prompt.get("system") if "system" in prompt else SYSTEM_PROMPT,
        order=order,
        min_pixels=_int(teller.get("min_pixels")),
        max_pixels=_int(teller.get("max_pixels")),
        recorded=True,
    )


def _int(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def finish_reasons(run) -> dict[str, str | None]:
    """Each story's ``finish_reason`` in a run folder's records (``meta.usage``; of candidate ``k`` for the
    view of one candidate of a multi-sample run, see :func:`sample_runs`); empty for texts."""
    from ..tell.run import RECORDS, record_samples

    if getattr(run, "kind", "run") != "run" or not (Path(run.path) / RECORDS).is_file():
        return {}
    records = _run_records(run)
    k = (run.manifest or {}).get(SAMPLE, 0)
    out: dict[str, str | None] = {}
    for record in records:
        candidates = record_samples(record)
        if k >= len(candidates):
            continue
        usage = _object(_object(candidates[k].get("meta")).get("usage"))  # damaged meta: as none
        if "story_id" in record:
            reason = usage.get("finish_reason")
            out[str(record["story_id"])] = str(reason) if reason is not None else None
    return out


def _object(value) -> dict:
    """``value`` if it is a JSON object, else an empty one (a damaged ``meta`` counts as none, as in evaluate)."""
    return value if isinstance(value, dict) else {}


def _run_records(run) -> list[dict]:
    """The records of a run folder, read again without a second warning: the run was loaded (and each of
    its damaged lines reported) by :func:`~storyreasoning.evaluate.runs.load_outputs`."""
    from ..tell.run import load_run

    return load_run(run.path, say=None).records


SAMPLE = "sample"  # the manifest key of one candidate's view of a multi-sample run


def sample_runs(run) -> list:
    """A multi-sample run (``manifest.json`` says ``samples`` > 1) as one run per candidate, labelled
    ``LABEL#k`` and with ``sample: k`` in its manifest; any other run as it is."""
    from ..tell.run import record_samples

    samples = (run.manifest or {}).get("samples")
    if getattr(run, "kind", "run") != "run" or not isinstance(samples, int) or samples <= 1:
        return [run]
    records = _run_records(run)
    views = []
    for k in range(samples):
        outputs = {}
        for record in records:
            candidates = record_samples(record)
            if k < len(candidates):
                outputs[str(record["story_id"])] = candidates[k]["raw"]
        views.append(
            dataclasses.replace(
                run, label=f"{run.label}#{k}", outputs=outputs, manifest={**run.manifest, SAMPLE: k}
            )
        )
    return views


@dataclass
class PairReport:
    stories: int = 0
    pairs: int = 0
    too_few: list[str] = field(default_factory=list)  # fewer than two candidates under one conditioning
    too_close: list[str] = field(default_factory=list)  # best and worst within the margin
    no_rejected: list[str] = field(default_factory=list)  # no well-structured candidate to reject
    truncated: int = 0  # candidates cut off at the token limit, left out
    truncated_by_run: dict[str, int] = field(default_factory=dict)
    several_conditionings: int = 0  # stories whose candidates were sampled under different prompts
    not_in_dataset: int = 0  # outputs for story ids the dataset does not hold

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Candidate:
    order: int  # position among the story's candidates: ties go to the earlier one
    label: str
    text: str
    conditioning: Conditioning | None  # None: the reference, which joins every group
    finish_reason: str | None


def build_pairs(
    stories,
    runs: Sequence,
    out: Path,
    *,
    include_reference: bool = False,
    min_margin: float = 0.05,
    weights: RewardWeights = RewardWeights(),
    pairs_per_story: int = 1,
    rejected: Rejected = "any",
    dataset: dict | None = None,
    progress: Callable[[int], None] | None = None,
    settings: dict | None = None,
    operational: Iterable[str] = (),
    say: Callable[[str], None] | None = None,
) -> PairReport:
    """Score every candidate of every story and write the pairs folder ``out``, resuming one a crash left.

    ``stories`` is a story dataset; ``runs`` are :class:`~storyreasoning.evaluate.runs.RunOutputs`.
    ``settings`` is what ``settings.json`` records (the command's settings; from Python,
    these arguments), written before any story is scored; ``operational`` names its keys
    that may change on a resume (``out`` always may). ``dataset`` is what ``dataset.json``
    and the manifest record of the stories (from Python by default
    :func:`~storyreasoning.data.identity.dataset_record` of ``stories``). A folder holding
    pairs made with other settings or from another dataset is refused, naming each difference.

    Each story's pairs are appended to ``pairs.jsonl`` and flushed, then its line to
    ``stories.jsonl``: a story is done once that line is there. Run again on an unfinished
    folder, the stories done are kept (a torn last line, and the pairs of a story without
    its line, are cut off) and scoring goes on from the next: the folder ends as an
    uninterrupted run leaves it, line for line. ``progress`` is advanced once a story
    (the ones already done at once); ``say`` hears how many were.
    """
    if not runs and not include_reference:
        raise UsageError("no candidates: give at least one run (or two, or one with --include-reference)")
    if min_margin < 0:
        raise UsageError(f"the margin must not be negative, got {min_margin}")
    if pairs_per_story < 1:
        raise UsageError(f"pairs per story must be at least 1, got {pairs_per_story}")
    if rejected not in REJECTED:
        raise UsageError(f"unknown choice of rejected {rejected!r}; use any or well-structured")
    given = list(runs)
    runs = [view for run in given for view in sample_runs(run)]  # each candidate of a multi-sample run apart
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(
            f"two runs share the label {next(x for x in labels if labels.count(x) > 1)!r}; rename one"
        )
    conditions = [run_conditioning(run) for run in runs]
    finishes = [finish_reasons(run) for run in runs]
    from ..data.identity import dataset_record
    from ..data.resume import ids_of

    if dataset is None:
        dataset = dataset_record(stories)
    if settings is None:  # called from Python: these arguments are the folder's settings
        settings = {
            "dataset": dataset, "runs": [str(absolute(run.path)) for run in given],
            "include_reference": include_reference, "min_margin": min_margin, "pairs_per_story": pairs_per_story,
            "rejected": rejected, "weights": asdict(weights),
        }  # fmt: skip
    ids = ids_of(stories)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, settings, {"out", *operational}, dataset, ids)
    # what an older version's atomic write left when killed (this is the folder's one writer)
    remove_leftovers(out / PAIRS)
    done = _resume(out, ids, say)
    report = PairReport(truncated_by_run={label: 0 for label in labels})
    for entry in done:
        _add(report, entry)
    if done and say is not None:
        say(f"resuming {out}: {len(done)} of {len(ids)} stories already scored")
    if progress and done:
        progress(len(done))
    if len(done) < len(ids):
        (out / MANIFEST).unlink(missing_ok=True)  # written again once every story is scored
    with (out / PAIRS).open("ab") as pairs_file, (out / STORIES).open("ab") as stories_file:
        for index in range(len(done), len(ids)):
            sample = stories[index]
            story = PairReport(truncated_by_run={label: 0 for label in labels})
            candidates: list[_Candidate] = []
            for run, condition, finish in zip(runs, conditions, finishes, strict=True):
                text = run.outputs.get(sample.story_id)
                if text is None:
                    continue
                reason = finish.get(sample.story_id)
                if reason == TRUNCATED:
                    story.truncated_by_run[run.label] += 1
                    continue
                candidates.append(_Candidate(len(candidates), run.label, text, condition, reason))
            if include_reference:
                candidates.append(_Candidate(len(candidates), REFERENCE, sample.output_text(), None, None))
            records = _story_pairs(sample, candidates, weights, min_margin, pairs_per_story, rejected, story)
            entry = {
                "story_id": sample.story_id,
                "pairs": len(records),
                "skipped": next((name for name in SKIPS if getattr(story, name)), None),
                "truncated": {label: n for label, n in story.truncated_by_run.items() if n},
                "several_conditionings": bool(story.several_conditionings),
            }
            # the story's pairs first, then its line: a story is done only with all its pairs
            pairs_file.write(b"".join(_line(record) for record in records))
            pairs_file.flush()
            stories_file.write(_line(entry))
            stories_file.flush()
            _add(report, entry)
            if progress:
                progress(1)
    known = set(ids)
    report.not_in_dataset = len({sid for run in runs for sid in run.outputs} - known)
    manifest = {
        "kind": "preference-pairs",
        "dataset": dataset,
        "runs": [
            {
                **run.describe(),
                **({SAMPLE: run.manifest[SAMPLE]} if SAMPLE in (run.manifest or {}) else {}),
                "conditioning": condition.to_dict(),
                "truncated": report.truncated_by_run[run.label],
                **({} if condition.recorded else {"note": _ASSUMED}),
            }
            for run, condition in zip(runs, conditions, strict=True)
        ],
        "include_reference": include_reference,
        "min_margin": min_margin,
        "pairs_per_story": pairs_per_story,
        "rejected": rejected,
        "pairing": "chosen and rejected sampled under the same conditioning; the reference joins any",
        "weights": asdict(weights),
        "report": report.to_dict(),
    }
    write_json_atomic(out / MANIFEST, manifest, ensure_ascii=True)
    return report


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def _add(report: PairReport, entry: dict) -> None:
    """Count one story's line of ``stories.jsonl`` into ``report``."""
    report.stories += 1
    report.pairs += entry["pairs"]
    if entry.get("skipped") in SKIPS:
        getattr(report, entry["skipped"]).append(entry["story_id"])
    for label, n in (entry.get("truncated") or {}).items():
        report.truncated += n
        if label in report.truncated_by_run:
            report.truncated_by_run[label] += n
    report.several_conditionings += bool(entry.get("several_conditionings"))


def _claim(out: Path, settings: dict, operational: set[str], dataset: dict, ids: list[str]) -> None:
    """Write ``settings.json`` and ``dataset.json`` (what ``dataset`` records of the stories) first; in a
    folder that holds scored stories, refuse other settings or another dataset (``ids``: its stories')."""
    from .settings import DATASET, folder_dataset_changes, shown_changes

    path = out / SETTINGS
    wanted = json.loads(json.dumps(settings, default=str))  # as the file holds them
    dataset = json.loads(json.dumps(dataset, default=str))
    started = any(
        (out / name).is_file() and (out / name).stat().st_size for name in (STORIES, PAIRS, MANIFEST)
    )
    held = _read_json(path) if path.is_file() else None
    foreign = sorted(set(held) - set(wanted)) if isinstance(held, dict) and not started else []
    if foreign:  # another job's folder (a training, a run, a built dataset): its record is not overwritten
        raise UsageError(
            f"{out} holds the settings of another job ({', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''}"
            " are no settings of train pairs); choose another --out for the pairs"
        )
    if path.is_file() and started:
        try:
            held = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(
                f"{path} is unreadable ({exc}); remove the folder {out} or choose another --out"
            ) from None
        held = held if isinstance(held, dict) else {}
        # the dataset by its identity (a source as typed names another folder from elsewhere)
        changed = [
            then_now(*change) for change in _differences(held, wanted, operational | {"source", "dataset"})
        ]

        def scored() -> list[str]:
            return [entry["story_id"] for entry in map(_entry, _lines(out / STORIES)) if entry is not None]

        found = folder_dataset_changes(  # the split, when a setting, is named with the others
            out / DATASET, held, dataset, split_setting="split" in wanted, recorded=scored, ids=lambda: ids
        )
        changed[:0] = [f"dataset {phrase}" for phrase in found]
        if changed:
            raise UsageError(
                f"{out} holds pairs made with other settings ({shown_changes(changed)}); run with the same ones "
                "to continue it, or choose another --out"
            )
    # written again as this run names them (an older folder's relative paths, a moved dataset's new path)
    for name, data in ((DATASET, dataset), (SETTINGS, wanted)):
        if _read_json(out / name) != data:
            write_json_atomic(out / name, data)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _lines(path: Path) -> list[bytes]:
    """The lines of ``path`` (none when it is not there)."""
    try:
        return path.read_bytes().splitlines(keepends=True) if path.is_file() else []
    except OSError as exc:
        raise file_error(exc, "read the pairs folder file") from None


def _differences(held: dict, wanted: dict, operational: set[str]) -> list[tuple[str, object, object]]:
    """``(name, old, new)`` for each setting that differs (nested ones as ``weights.reid``; paths compared
    resolved: :func:`~.settings.place`), sorted."""
    from ..settings import same_place

    def flat(data: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in data.items():
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    old, new = flat(held), flat(wanted)
    return [
        (f"--{key.replace('_', '-')}" if "." not in key else key, old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if key.split(".")[0] not in operational
        and (not same_place(old.get(key), new.get(key)) if key == "runs" else old.get(key) != new.get(key))
    ]


def _resume(out: Path, ids: list[str], say: Callable[[str], None] | None = None) -> list[dict]:
    """The ``stories.jsonl`` lines of the stories already done, both files cut back to just after them.

    A story is done when its line is whole and its pairs are all in ``pairs.jsonl``, whole,
    in order; the first that is not ends what is kept (a torn line, a story killed while its
    pairs were written, pairs a power cut lost), and so does a story scored a second time
    (two builds once wrote into one folder: ``say`` hears it). The stories must be the
    dataset's first ones.
    """
    journal, pairs_path = out / STORIES, out / PAIRS
    lines, pair_lines = _lines(journal), _lines(pairs_path)
    done: list[dict] = []
    seen: dict[str, int] = {}  # story id -> its line
    kept_journal = kept_pairs = 0  # bytes
    at = 0  # the next line of pairs.jsonl
    for number, raw in enumerate(lines, start=1):
        entry = _entry(raw)
        if entry is None:
            break
        n = entry["pairs"]
        mine = pair_lines[at : at + n]
        if len(mine) < n or not all(_pair_of(line, entry["story_id"]) for line in mine):
            break
        k = len(done)
        sid = entry["story_id"]
        if sid in seen and (k >= len(ids) or ids[k] != sid):  # not a story the dataset holds twice
            if say is not None:
                say(
                    f"warning: {journal} line {number} scores story {sid!r} again (line {seen[sid]} did): two "
                    f"builds wrote into {out} at once; the {k} stories before it are kept, and the stories from "
                    "that line on are scored again"
                )
            break
        if k >= len(ids) or ids[k] != sid:
            theirs = ids[k] if k < len(ids) else "none (the dataset has fewer)"
            raise UsageError(
                f"{out} holds pairs of other stories (story {k + 1} there is {sid!r}, in the dataset "
                f"{theirs!r}); continue it with the same dataset, split and --limit, or choose another --out"
            )
        seen.setdefault(sid, number)
        done.append(entry)
        at += n
        kept_journal += len(raw)
        kept_pairs += sum(len(line) for line in mine)
    for path, size in ((journal, kept_journal), (pairs_path, kept_pairs)):
        if path.is_file() and path.stat().st_size != size:
            os.truncate(path, size)
    return done


def _entry(raw: bytes) -> dict | None:
    """A whole line of ``stories.jsonl``, or None."""
    if not raw.endswith(b"\n"):
        return None
    try:
        entry = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("story_id"), str):
        return None
    n = entry.get("pairs")
    return entry if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


def _pair_of(raw: bytes, story_id: str) -> bool:
    """Whether ``raw`` is a whole line of ``pairs.jsonl`` holding a pair of ``story_id``."""
    if not raw.endswith(b"\n"):
        return False
    try:
        pair = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(pair, dict) and pair.get("story_id") == story_id and not _pair_problem(pair)


_ASSUMED = (
    "no prompt recorded (a folder of texts): told with the default prompt, system prompt and order assumed; "
    "train dpo uses its own pixel budget"
)


def _story_pairs(sample, candidates, weights, min_margin, pairs_per_story, rejected, report) -> list[dict]:
    """The pair records of one story (see the module docstring for the rule), counting why there are none."""
    groups: dict[tuple, Conditioning] = {}
    for c in candidates:
        if c.conditioning is not None:
            groups.setdefault(c.conditioning.key(), c.conditioning)
    if len(groups) > 1:
        report.several_conditionings += 1
    if not groups and candidates:  # the reference alone
        groups[Conditioning().key()] = Conditioning()
    members = {
        key: [c for c in candidates if c.conditioning is None or c.conditioning.key() == key]
        for key in groups
    }
    if all(len(m) < 2 for m in members.values()):
        report.too_few.append(sample.story_id)
        return []
    score = StoryScorer(sample, weights)
    rewards = {c.order: score(c.text) for c in candidates}
    structured: dict[int, bool] = {}
    sizes: list = []

    def well_structured(c: _Candidate) -> bool:
        if c.order not in structured:
            from ..format.stream import parse_output

            sizes[:] = sizes or sample.frame_sizes()
            verdict = parse_output(c.text).validate(n_images=sample.frame_count, image_sizes=sizes)
            structured[c.order] = bool(verdict.well_structured)
        return structured[c.order]

    found: list[tuple[float, int, int, dict]] = []
    pool_empty = True
    for g, (key, group) in enumerate(members.items()):
        if len(group) < 2:
            continue
        best = max(group, key=lambda c: (rewards[c.order].total, -c.order))
        pool = [c for c in group if c is not best and (rejected == "any" or well_structured(c))]
        pool_empty = pool_empty and not pool
        pool.sort(key=lambda c: (rewards[c.order].total, c.order))
        high = rewards[best.order].total
        for rank, worse in enumerate(pool[:pairs_per_story]):
            margin = high - rewards[worse.order].total
            if margin < min_margin or margin <= 0:
                break
            found.append((margin, g, rank, _record(sample, best, worse, rewards, groups[key], candidates)))
    if not found:
        (report.no_rejected if rejected != "any" and pool_empty else report.too_close).append(sample.story_id)
        return []
    found.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [record for *_, record in found[:pairs_per_story]]


def _record(sample, best, worse, rewards, conditioning: Conditioning, candidates) -> dict:
    return {
        "story_id": sample.story_id,
        "chosen": best.text,
        "rejected": worse.text,
        "chosen_from": best.label,
        "rejected_from": worse.label,
        "chosen_reward": rewards[best.order].to_dict(),
        "rejected_reward": rewards[worse.order].to_dict(),
        "margin": rewards[best.order].total - rewards[worse.order].total,
        "candidates": {c.label: rewards[c.order].total for c in candidates},
        "conditioning": conditioning.to_dict(),
        "chosen_finish_reason": best.finish_reason,
        "rejected_finish_reason": worse.finish_reason,
    }


def read_pairs(folder: str | Path) -> tuple[dict, list[dict]]:
    """``(manifest, pairs)`` of a pairs folder, each pair checked (a JSON object with ``story_id``,
    ``chosen``, ``rejected`` and, if any, a ``conditioning`` object), or one clear error naming the
    file and the line."""
    folder = Path(folder)
    if (folder / PAIRS).is_file() and not (folder / MANIFEST).is_file():
        raise UsageError(
            f"{folder} is an unfinished pairs folder (no {MANIFEST} yet: train pairs was stopped before it "
            "scored every story); run the same storyreasoning train pairs command again to finish it"
        )
    if not (folder / PAIRS).is_file() or not (folder / MANIFEST).is_file():
        raise UsageError(
            f"{folder} is not a pairs folder (no {PAIRS} and {MANIFEST}); make one with storyreasoning train pairs"
        )
    rebuild = "rebuild the pairs with storyreasoning train pairs"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        data = (folder / PAIRS).read_bytes()
    except OSError as exc:
        raise file_error(exc, "read the pairs folder file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{folder / MANIFEST} is not valid JSON ({exc}); {rebuild}") from None
    if not isinstance(manifest, dict):
        raise UsageError(f"{folder / MANIFEST} must hold a JSON object; {rebuild}")
    pairs = []
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{folder / PAIRS} line {n} is not UTF-8 text ({exc.reason}); {rebuild}"
            ) from None
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{folder / PAIRS} line {n} is not JSON; {rebuild}") from None
        problem = _pair_problem(pair)
        if problem:
            raise UsageError(f"{folder / PAIRS} line {n} is not a pair ({problem}); {rebuild}")
        pairs.append(pair)
    return manifest, pairs


def _pair_problem(pair) -> str:
    """What makes ``pair`` (one line of ``pairs.jsonl``) unusable, or "" for a good one."""
    if not isinstance(pair, dict):
        return f"{json_kind(pair)}, not a JSON object"
    for key in ("story_id", "chosen", "rejected"):
        if not isinstance(pair.get(key), str):
            return f"no {key}" if pair.get(key) is None else f"its {key} is not text"
    conditioning = pair.get("conditioning")
    if conditioning is None:
        return ""
    if not isinstance(conditioning, dict):
        return "its conditioning is not an object"
    for key in ("prompt", "system"):
        if not isinstance(conditioning.get(key), (str, type(None))):
            return f"its conditioning's {key} is not text"
    if conditioning.get("order", "images-first") not in ORDERS:
        return f"its conditioning's order {conditioning.get('order')!r} is none of {', '.join(ORDERS)}"
    for key in ("min_pixels", "max_pixels"):
        value = conditioning.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            return f"its conditioning's {key} is not a positive whole number"
    return ""


__all__ = [
    "MANIFEST",
    "PAIRS",
    "REFERENCE",
    "REJECTED",
    "SETTINGS",
    "STORIES",
    "TRUNCATED",
    "Conditioning",
    "PairReport",
    "build_pairs",
    "finish_reasons",
    "read_pairs",
    "run_conditioning",
    "sample_runs",
]

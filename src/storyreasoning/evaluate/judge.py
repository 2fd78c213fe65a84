"""A multimodal judge: hallucinations, creativity, coherence and grounding quality, per story.

``storyreasoning evaluate judge RUN --endpoint URL`` shows a judge model, behind any
OpenAI-compatible server, the frames of each story of a run (the dataset's images, sent
as ``tell-dataset`` sent them: PNG and JPEG bytes as they are, anything else as PNG) and
the storyteller's output (CoT and story), and asks for one JSON object: every
hallucination (type, quoted words, frame, reason) and three scores from 1 to 5 whose
rubric anchors are written out in the prompt (:mod:`.judge_prompts`).

**Answers are checked, not trusted.** The request asks for ``response_format``
``json_schema`` (a server that refuses the field is asked without it from then on), and
every answer is validated here whatever the server promised: the JSON itself, the keys,
the types and ranges, each quote found in the output (tags, case, spacing and curly
quotes aside) and each frame within the story. We check with our own small validator
rather than ``jsonschema``: the rules that matter most (the quote is in the text, the
frame exists) are not expressible in a schema, and the messages go back to the judge. An
invalid answer is asked again once, with the problem appended to the conversation; a
second invalid answer is recorded as failed, with both answers and the error.

**Resumable like a run.** One JSON line per story is appended (and fsync'd) to
``OUT/judgements.jsonl`` as it completes; run again, the stories already there are
skipped, so a killed job loses nothing and repeats nothing. The job holds OUT alone while
it runs (:func:`storyreasoning.files.lock_folder`: a second job into the same OUT is
refused in one line), and a resume repairs the file as ``tell-dataset`` repairs its
records (:func:`storyreasoning.tell.run.repair_lines`: a torn last line cut off, a damaged
line set aside and its story judged again, a story judged twice kept once). Every line
names its judge (model, :data:`PROMPT_VERSION`, the prompt's sha256); a job refuses to
continue an OUT judged by another model or prompt unless ``--allow-mixed``. A story that
gets no answer (the server down, timing out, 5xx after the retries; the story or a frame of the dataset
unreadable) writes no line, as ``tell-dataset`` writes no record for a story it could not
tell: it is noted in ``errors.jsonl`` (until a later run judges it) and judged again by the
next run; three stories in a row failing at the server stop the job. A request the server
refuses (a 4xx: the story too long for its context, say) is the story's answer: a failed
line, kept (asking again would be refused again, and paid for). (A failure line an older version wrote names no judge; a resume drops it and judges
its story again.) An OUT must be the judge's own: a file, or a run folder (holding a
``manifest.json`` or ``records.jsonl``), is refused in one line. Token usage and cost (``--price-input``/``--price-output`` per million
tokens) are kept per story and in total.

**Judgements of the output judged.** Every line records the run folder it judged
(``run``; ``against`` for a pair) and the sha256 of the output it judged
(``output_sha256``; ``against_sha256``). A resume keeps a line only while the run still
holds that very output: a line of the same run whose output changed since (the story was
told again) is dropped and its story judged again (said in one line); lines of another
run's outputs refuse the whole OUT (judge each run into its own OUT: judging one run there
would drop the other's judgements). A run moved or renamed is the same run while it holds
at least half of the outputs judged at its old path (:func:`stale_results`). A line written before lines recorded this is
taken as the run's when the run that ``OUT/settings.json`` names is this one.

``OUT/summary.json`` holds the means with bootstrap 95% intervals (:mod:`.stats`), taken over
the stories in the order of their ids, so a resumed job summarizes exactly as an
uninterrupted one whatever order the lines were written in. An OUT
outside ``RUN/judge`` is recorded in ``RUN/judge-location.json`` (:func:`record_location`), so that
``evaluate``, ``evaluate compare`` and the studio read the judge there; the run's last judge wins.

**Pairwise** (``--against RUN_B``): the judge sees both outputs of each story and says
which is better overall and per criterion, asked in both orders (RUN's output first,
then second) so that a judge that prefers a position cancels out: an order-inconsistent
verdict counts as a tie. ``OUT/pairwise.jsonl`` is resumable the same way;
``OUT/pairwise_summary.json`` holds RUN's win rate over RUN_B with its interval.

:func:`judge_story` (and :class:`Judge`) judge one story, for other jobs (a judge reward).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoryReasoningError, UsageError, json_kind
from ..files import append_json_line
from .judge_prompts import (
    CRITERIA,
    HALLUCINATION_TYPES,
    JUDGE_PROMPT,
    JUDGEMENT_SCHEMA,
    PAIRWISE_PROMPT,
    PAIRWISE_SCHEMA,
    PAIRWISE_SHA256,
    PROMPT_SHA256,
    PROMPT_VERSION,
    RETRY_NOTE,
    VERDICTS,
    response_format,
)

JUDGEMENTS = "judgements.jsonl"
PAIRWISE = "pairwise.jsonl"
ERRORS = "errors.jsonl"
SUMMARY = "summary.json"
PAIRWISE_SUMMARY = "pairwise_summary.json"
STOP_AFTER = 3  # stories in a row failing at the endpoint before a job stops
MAX_PROBLEMS = 6  # problems of one answer named in its error

# -- answers ----------------------------------------------------------------------------------------


class AnswerError(ValueError):
    """A judge's answer that cannot be used; the message says why (and goes back to the judge)."""


_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.S)
_TAG = re.compile(r"</?gd[a-z]\b[^>]*>")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})


def parse_answer(text: str) -> Any:
    """The JSON value in a judge's answer: a reasoning part (``<think>…</think>``) and a code fence
    around it are passed over, and so is prose before the first ``{``; :class:`AnswerError` when none."""
    body = _THINK.sub("", text or "").strip()
    if body.startswith("<think>"):
        raise AnswerError("the answer is all reasoning (its <think> is never closed) and holds no JSON")
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        raise AnswerError("the answer is empty; it must be a JSON object")
    try:
        return json.loads(body)
    except ValueError as exc:
        first = body.find("{")
        if first >= 0:
            try:
                return json.JSONDecoder().raw_decode(body, first)[0]
            except ValueError:
                pass
        detail = (
            f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else exc
        )
        raise AnswerError(f"the answer is not JSON ({detail})") from None


def normalise(text: str) -> str:
    """Text as quotes are matched: without tags, curly quotes straightened, case folded, spaces collapsed."""
    return " ".join(_TAG.sub("", text).translate(_QUOTES).casefold().split())


def quote_found(quote: str, output: str) -> bool:
    """Whether ``quote`` is in ``output`` (see :func:`normalise`; quotes and end punctuation around it aside)."""
    wanted = normalise(quote).strip(" \"'.,;:!?…")
    return bool(wanted) and wanted in normalise(output)


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _fail(problems: list[str]) -> AnswerError:
    shown = problems[:MAX_PROBLEMS]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return AnswerError("; ".join(shown) + more)


def _keys(data: Any, required: Iterable[str]) -> list[str]:
    if not isinstance(data, dict):
        raise AnswerError(f"the answer is {json_kind(data)}, not a JSON object")
    missing = [key for key in required if key not in data]
    return [f"the key {key!r} is missing" for key in missing]


def check_judgement(data: Any, output: str, n_frames: int) -> dict:
    """``data`` as a story judgement of ``output`` (``n_frames`` frames): the checked, normalised
    ``{"hallucinations": [...], "creativity", "coherence", "grounding_quality"}``, or an
    :class:`AnswerError` naming every problem."""
    problems = _keys(data, ("hallucinations", *CRITERIA))
    scores: dict[str, int] = {}
    for name in CRITERIA:
        if name not in data:
            continue
        value = _whole(data[name])
        if value is None or not 1 <= value <= 5:
            problems.append(f"{name} is {json.dumps(data[name])}, not a whole number from 1 to 5")
        else:
            scores[name] = value
    found: list[dict] = []
    items = data.get("hallucinations", [])
    if not isinstance(items, list):
        problems.append(f"hallucinations is {json_kind(items)}, not a list")
        items = []
    for i, item in enumerate(items):
        where = f"hallucinations[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where} is {json_kind(item)}, not an object")
            continue
        missing = [key for key in ("type", "quote", "frame", "reason") if key not in item]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        kind = item["type"].strip().lower() if isinstance(item["type"], str) else None
        if kind not in HALLUCINATION_TYPES:
            problems.append(
                f"{where}.type is {json.dumps(item['type'])}, not one of {', '.join(HALLUCINATION_TYPES)}"
            )
        quote = item["quote"]
        if not isinstance(quote, str) or not quote.strip():
            problems.append(f"{where}.quote is {json.dumps(quote)}, not the output's words")
        elif not quote_found(quote, output):
            problems.append(f"{where}.quote {json.dumps(quote)} is not in the output; copy its words exactly")
        frame = _whole(item["frame"])
        if frame is None or not 1 <= frame <= n_frames:
            problems.append(
                f"{where}.frame is {json.dumps(item['frame'])}, not a frame number from 1 to {n_frames}"
            )
        if not isinstance(item["reason"], str):
            problems.append(f"{where}.reason is {json_kind(item['reason'])}, not a line of text")
        found.append({"type": kind, "quote": quote, "frame": frame, "reason": item["reason"]})
    if problems:
        raise _fail(problems)
    return {"hallucinations": found, **scores}


def check_verdict(data: Any) -> dict:
    """``data`` as a pairwise verdict: ``{"winner", "creativity", "coherence", "grounding_quality", "reason"}``,
    each verdict ``"1"``, ``"2"`` or ``"tie"`` (the numbers 1 and 2 are taken too)."""
    problems = _keys(data, ("winner", *CRITERIA))
    out: dict[str, Any] = {}
    for name in ("winner", *CRITERIA):
        if name not in data:
            continue
        value = data[name]
        value = (
            str(value).strip().lower()
            if isinstance(value, (str, int)) and not isinstance(value, bool)
            else None
        )
        if value not in VERDICTS:
            problems.append(f'{name} is {json.dumps(data[name])}, not "1", "2" or "tie"')
        out[name] = value
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        problems.append(f"reason is {json_kind(reason)}, not a line of text")
    if problems:
        raise _fail(problems)
    out["reason"] = reason
    return out


# -- one story --------------------------------------------------------------------------------------


@dataclass
class Judgement:
    """What the judge said of one story. ``ok`` False: both answers were invalid (``error`` says why)."""

    ok: bool
    scores: dict[str, int] = field(default_factory=dict)  # creativity, coherence, grounding_quality
    hallucinations: list[dict] = field(default_factory=list)  # {type, quote, frame, reason}
    answers: list[str] = field(default_factory=list)  # the judge's raw answers, in order
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    json_schema: bool = True  # asked with response_format

    @property
    def attempts(self) -> int:
        return len(self.answers)

    def by_type(self) -> dict[str, int]:
        """The number of hallucinations of each type (every type present, zero when none)."""
        counts = dict.fromkeys(HALLUCINATION_TYPES, 0)
        for item in self.hallucinations:
            counts[item["type"]] += 1
        return counts

    def to_dict(self) -> dict:
        return {
            "status": "judged" if self.ok else "failed",
            "scores": dict(self.scores),
            "hallucinations": list(self.hallucinations),
            "error": self.error,
            "answers": list(self.answers),
            "attempts": self.attempts,
            "json_schema": self.json_schema,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
        }


@dataclass
class Verdict:
    """One pairwise verdict, in the order asked: ``winner`` and each criterion "1", "2" or "tie"."""

    ok: bool
    choice: dict[str, str] = field(default_factory=dict)  # winner, creativity, coherence, grounding_quality
    reason: str = ""
    answers: list[str] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    json_schema: bool = True

    def to_dict(self) -> dict:
        return {
            "status": "judged" if self.ok else "failed",
            "choice": dict(self.choice),
            "reason": self.reason,
            "error": self.error,
            "answers": list(self.answers),
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
        }


def image_url(image: Any) -> str:
    """A frame as ``tell-dataset`` sends it: a ``data:`` URL of a PNG or JPEG's own bytes, anything else
    encoded as PNG (a :class:`~storyreasoning.data.Frame`, a path, bytes or a PIL image)."""
    from ..format.images import image_data_url, open_image, read_image_bytes, sniff_mime

    name = None  # what an unreadable frame's error names
    if hasattr(image, "bytes") and callable(image.bytes) and hasattr(image, "open"):  # a data.Frame
        data: Any = image.bytes()
        name = getattr(image, "name", None)
    elif isinstance(image, (str, Path)):
        data, name = read_image_bytes(image), str(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        return image_data_url(image)  # a PIL image: PNG
    if sniff_mime(data[:16]) in ("image/png", "image/jpeg"):
        return image_data_url(data)
    return image_data_url(open_image(data, name=name))


def frame_parts(frames: Sequence[Any]) -> list[dict]:
    """The user-turn parts showing ``frames``, each labelled with its number."""
    parts: list[dict] = []
    for number, frame in enumerate(frames, start=1):
        parts.append({"type": "text", "text": f"Frame {number}:"})
        parts.append({"type": "image_url", "image_url": {"url": image_url(frame)}})
    return parts


def story_messages(parts: list[dict], output: str) -> list[dict]:
    """The judge's conversation for one story: the prompt, then the frames (``frame_parts``) and the output."""
    n = sum(part["type"] == "image_url" for part in parts)
    text = f"The storyteller's output for these {n} frames:\n\n{output}"
    return [
        {"role": "system", "content": JUDGE_PROMPT},
        {"role": "user", "content": [*parts, {"type": "text", "text": text}]},
    ]


def pair_messages(parts: list[dict], first: str, second: str) -> list[dict]:
    """The pairwise judge's conversation: the prompt, the frames, Output 1 and Output 2."""
    n = sum(part["type"] == "image_url" for part in parts)
    text = (
        f"Two storytellers' outputs for these {n} frames.\n\n"
        f"=== Output 1 ===\n{first}\n\n=== Output 2 ===\n{second}"
    )
    return [
        {"role": "system", "content": PAIRWISE_PROMPT},
        {"role": "user", "content": [*parts, {"type": "text", "text": text}]},
    ]


def _refuses_format(exc: Exception) -> bool:
    """Whether a failed request is the server refusing ``response_format`` (not the story, not the server)."""
    low = str(exc).lower()
    return not getattr(exc, "at_endpoint", False) and ("response_format" in low or "json_schema" in low)


class Judge:
    """A judge behind an OpenAI-compatible teller (:class:`~storyreasoning.tell.openai.OpenAITeller`).

    ``max_new_tokens`` bounds each answer; sampling is greedy with ``seed`` (deterministic
    where the server is). ``json_schema``: ask for ``response_format`` json_schema (dropped for
    good once the server refuses it). Thread-safe: a batch judges several stories at once.
    A failing server raises :class:`~storyreasoning.tell.TellError`; an invalid answer does not.
    """

    def __init__(
        self, teller: Any, *, max_new_tokens: int = 2048, seed: int = 0, json_schema: bool = True
    ) -> None:
        from ..tell.base import Sampling

        self.teller = teller
        self.sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
        self.json_schema = json_schema
        self._lock = threading.Lock()

    def describe(self, *, pairwise: bool = False) -> dict:
        """The judge as results record it: endpoint, model, prompt version and the prompt's sha256."""
        return {
            "endpoint": getattr(self.teller, "endpoint", None),
            "model": getattr(self.teller, "model", None),
            "prompt_version": PROMPT_VERSION,
            "prompt_sha256": PAIRWISE_SHA256 if pairwise else PROMPT_SHA256,
        }

    def _complete(self, messages: list[dict], name: str, schema: dict) -> tuple[str, bool]:
        """The answer to ``messages`` and whether it was asked with ``response_format``."""
        from ..tell.base import TellError

        if self.json_schema:
            try:
                extra = {"response_format": response_format(name, schema)}
                return self.teller.complete(messages, sampling=self.sampling, extra=extra), True
            except TellError as exc:
                if not _refuses_format(exc):
                    raise
                with self._lock:
                    self.json_schema = False  # this server takes no response_format: never ask again
        return self.teller.complete(messages, sampling=self.sampling), False

    def _ask(
        self, messages: list[dict], name: str, schema: dict, check: Callable[[Any], dict], record: Any
    ) -> Any:
        """Ask; on an invalid answer ask once more with the problem appended. Fills ``record``."""
        for attempt in range(2):
            text, record.json_schema = self._complete(messages, name, schema)
            usage = getattr(self.teller, "last_usage", None)
            record.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            record.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
            record.answers.append(text)
            try:
                data = check(parse_answer(text))
            except AnswerError as exc:
                record.error = str(exc)
                if getattr(usage, "finish_reason", None) == "length":
                    cut = self.sampling.max_new_tokens
                    record.error += f" (the answer was cut at {cut} tokens; raise --max-new-tokens)"
                if attempt == 0:
                    messages = [
                        *messages,
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": RETRY_NOTE.format(error=exc)},
                    ]
                continue
            record.ok, record.error = True, None
            return data
        record.error = f"the judge's answer was invalid twice; the last: {record.error}"
        return None

    def story(self, frames: Sequence[Any], output: str, *, parts: list[dict] | None = None) -> Judgement:
        """Judge one storyteller's ``output`` for ``frames``."""
        parts = frame_parts(frames) if parts is None else parts
        n = sum(part["type"] == "image_url" for part in parts)
        judgement = Judgement(ok=False)
        data = self._ask(
            story_messages(parts, output),
            "story_judgement",
            JUDGEMENT_SCHEMA,
            lambda value: check_judgement(value, output, n),
            judgement,
        )
        if data is not None:
            judgement.hallucinations = data["hallucinations"]
            judgement.scores = {name: data[name] for name in CRITERIA}
        return judgement

    def pair(
        self, frames: Sequence[Any], first: str, second: str, *, parts: list[dict] | None = None
    ) -> Verdict:
        """Which of two outputs for ``frames`` is better, ``first`` shown as Output 1."""
        parts = frame_parts(frames) if parts is None else parts
        verdict = Verdict(ok=False)
        data = self._ask(
            pair_messages(parts, first, second), "pairwise_verdict", PAIRWISE_SCHEMA, check_verdict, verdict
        )
        if data is not None:
            verdict.reason = data.pop("reason")
            verdict.choice = data
        return verdict


def judge_story(
    teller: Any,
    frames: Sequence[Any],
    output: str,
    *,
    max_new_tokens: int = 2048,
    seed: int = 0,
    json_schema: bool = True,
) -> Judgement:
    """Judge one story: the frames and a storyteller's raw output (CoT and story) -> a :class:`Judgement`.

    ``teller`` is an :class:`~storyreasoning.tell.openai.OpenAITeller` (anything with its
    ``complete`` and ``last_usage``). An invalid answer is asked again once, then the
    judgement is returned with ``ok`` False; a failing server raises a ``TellError``.
    """
    return Judge(teller, max_new_tokens=max_new_tokens, seed=seed, json_schema=json_schema).story(
        frames, output
    )


def order_outcomes(first: str, second: str) -> tuple[float, float]:
    """RUN's outcome in each order: ``first`` is the verdict with RUN shown as Output 1, ``second`` with
    RUN as Output 2 (1 a win, 0 a loss, 0.5 a tie)."""
    return {"1": 1.0, "2": 0.0, "tie": 0.5}[first], {"1": 0.0, "2": 1.0, "tie": 0.5}[second]


def combine(first: str, second: str) -> float:
    """RUN's outcome from the verdicts of both orders (see :func:`order_outcomes`); verdicts that
    disagree (a judge swayed by the position) count as a tie."""
    a, b = order_outcomes(first, second)
    return a if a == b else 0.5


# -- files ------------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_results(
    path: Path, *, repair: bool = False, say: Callable[[str], None] = lambda line: None
) -> dict[str, dict]:
    """The results in a ``judgements.jsonl`` or ``pairwise.jsonl``, by story id (the run files' reader
    and rule: a torn last line is no result, a story's first line is its result; with ``repair``
    the file is repaired for a resume, see :func:`storyreasoning.tell.run.repair_lines`)."""
    from ..tell.run import read_lines, repair_lines

    if repair:
        lines = repair_lines(path, "record", say, fate=", its story is judged again", unique=True)
    else:
        lines = read_lines(path, "record")
    found: dict[str, dict] = {}
    for item in lines.items:
        found.setdefault(item["story_id"], item)
    return found


def output_sha256(text: str) -> str:
    """The sha256 of an output a judgement line records (of its UTF-8 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_judge(results: dict[str, dict], judge: dict, path: Path, *, allow_mixed: bool) -> None:
    """Refuse to add to ``path`` results of another judge (model, prompt version or prompt) unless ``allow_mixed``.
    A line naming no judge is no judgement (see :func:`unasked`) and is passed over."""
    from ..data.identity import value_changes

    keys = ("model", "prompt_version", "prompt_sha256")
    wanted = {key: judge.get(key) for key in keys}
    for item in results.values():
        if "judge" not in item or allow_mixed:
            continue
        had = {key: (item.get("judge") or {}).get(key) for key in keys}
        if had != wanted:
            raise UsageError(
                f"{path} holds judgements by another judge: {'; '.join(value_changes(had, wanted, ''))}; resume "
                "with the same --model and prompt, pass --allow-mixed to add to them anyway, or choose another --out"
            )


def unasked(results: dict[str, dict]) -> list[str]:
    """The stories whose line names no judge: not a judgement but a failure before the judge was asked
    (an unreadable frame, a refused request), which an older version wrote as a line; to be judged again."""
    return [story_id for story_id, item in results.items() if "judge" not in item]


def _recorded_runs(out: Path) -> dict[str, str | None]:
    """The runs (``run``, ``against``) the last job into ``out`` judged, as ``settings.json`` names them
    (resolved from here); none when it names none."""
    try:
        recorded = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {
        key: str(Path(recorded[key]).expanduser().resolve()) if recorded.get(key) else None
        for key in ("run", "against")
        if key in recorded
    }


def stale_results(
    results: dict[str, dict],
    outputs: dict[str, str],
    run: Path,
    path: Path,
    *,
    theirs: dict[str, str] | None = None,
    against: Path | None = None,
    recorded: dict[str, str | None] | None = None,
) -> list[str]:
    """The stories whose lines in ``path`` judged outputs other than ``outputs`` (and, for a pair,
    ``theirs``) hold now, of this same run (it told them again): to be judged again.

    The same run is the run at the path a line names or, at another path, a run moved: one that
    still holds at least half of the outputs judged at that path (by their sha256). Another run (another
    teller, sampling, seed or prompt) shares next to none of a run's outputs, so its lines refuse the
    job (:class:`UsageError` naming both runs): judging it there would drop that run's judgements. A
    line without the hashes (an older version's) is this run's when ``recorded`` (the runs
    ``OUT/settings.json`` names, see :func:`_recorded_runs`) names this run, else another run's."""
    here = {"run": str(Path(run).resolve()), "against": str(Path(against).resolve()) if against else None}
    now = {"run": outputs, "against": theirs}
    digest = {"run": "output_sha256", "against": "against_sha256"}
    keys = ("run",) + (("against",) if against is not None else ())
    stale: list[str] = []
    strangers: dict[str, str] = {}  # which: what those lines judged, then and now
    moved: dict[str, list] = {}  # which: [the path then, outputs judged there still held, others]
    for story_id, item in results.items():
        if any(story_id not in (now[key] or {}) for key in keys):
            continue  # not judged now (and not summarized): left as it is
        if "output_sha256" not in item:  # an older version's line: the folder's record decides
            for key in keys:
                then = (recorded or {}).get(key)
                if then != here[key]:
                    strangers.setdefault(key, f"{then or 'a run it does not name'} then, {here[key]} now")
            continue
        same = {key: item.get(digest[key]) == output_sha256(now[key][story_id]) for key in keys}
        for key in keys:
            if item.get(key) not in (None, here[key]):
                seen = moved.setdefault(key, [item[key], 0, 0])
                seen[1 if same[key] else 2] += 1
        if not all(same.values()):
            stale.append(story_id)
    for key, (then, kept, changed) in moved.items():
        if changed > kept:  # most outputs judged there are not this run's: another run
            strangers.setdefault(
                key, f"{then} then, {here[key]} now, {changed} of the {kept + changed} outputs judged differ"
            )
    if strangers:
        said = "; ".join(
            f"{'--against' if key == 'against' else 'the run'} {phrase}" for key, phrase in strangers.items()
        )
        raise UsageError(
            f"{path} holds judgements of another run's outputs ({said}); judge each run into its own --out "
            "(the default is a folder inside the run), or resume judging that run there"
        )
    return stale


def drop_results(path: Path, stories: Iterable[str]) -> None:
    """Rewrite ``path`` (atomically) without the lines of ``stories``."""
    from ..files import write_bytes_atomic
    from ..tell.run import read_lines

    gone = set(stories)
    lines = read_lines(path, "record")
    write_bytes_atomic(
        path, b"".join(raw + b"\n" for _, item, raw in lines.entries if item["story_id"] not in gone)
    )


# -- many stories -----------------------------------------------------------------------------------


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    unjudged: int = 0  # no judgement (the server failed, a frame is unreadable): left for the next run
    first_error: str | None = None  # "story_id: error" of the first of them


def judge_all(
    todo: Sequence[str],
    task: Callable[[str, Any], dict],
    path: Path,
    *,
    concurrency: int,
    errors: Path,
    load: Callable[[str], Any] = lambda story_id: None,
    advance: Callable[[int], None] = lambda n: None,
    stop: Callable[[], None] | None = None,
) -> Progress:
    """Run ``task(story_id, load(story_id))`` (a result line) for each story, ``concurrency`` at once,
    appending each line to ``path`` as it completes; ``load`` runs in this thread (a dataset is
    read by one thread), as slots free up. A story that gets no judgement (the server failed, the story
    or a frame cannot be read; a refused request is the task's failed line) writes no line: it is noted
    in ``errors`` and left for the next run, as tell-dataset leaves a story it could not tell;
    :data:`STOP_AFTER` in a row failing at the endpoint stop the job. ``stop`` ends the requests in
    flight when the loop is left early (Ctrl-C)."""
    from ..tell.base import TellError
    from ..tell.run import EndpointDown

    progress = Progress()
    source = iter(todo)
    pending: dict[Future, str] = {}
    in_a_row = 0

    def unjudged(story_id: str, exc: StoryReasoningError) -> None:
        """No judgement: noted in errors.jsonl and left for the next run, as tell-dataset does."""
        nonlocal in_a_row
        progress.unjudged += 1
        progress.first_error = progress.first_error or f"{story_id}: {exc}"
        append_json_line(errors, {"story_id": story_id, "error": str(exc), "at": _now()})
        advance(1)
        at_endpoint = isinstance(exc, TellError) and exc.at_endpoint  # else the story's own
        in_a_row = in_a_row + 1 if at_endpoint else 0
        if in_a_row >= STOP_AFTER:
            raise EndpointDown(
                f"stopped after {in_a_row} stories in a row failed at the endpoint ({exc}); "
                f"the {_count(path)} results so far are kept in {path}, run the same command "
                "again to continue once the server is up"
            ) from None

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="storyreasoning-judge")
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < concurrency:
                story_id = next(source, None)
                if story_id is None:
                    exhausted = True
                    continue
                try:
                    story = load(story_id)
                except StoryReasoningError as exc:  # the story cannot be read (its folder, its row)
                    unjudged(story_id, exc)
                    continue
                pending[pool.submit(task, story_id, story)] = story_id
            if not pending:
                return progress
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                story_id = pending.pop(future)
                try:
                    line = future.result()
                except StoryReasoningError as exc:  # the server failed, or a frame is unreadable
                    unjudged(story_id, exc)
                    continue
                in_a_row = 0
                append_json_line(path, line)
                progress.done += line["status"] == "judged"
                progress.failed += line["status"] != "judged"
                advance(1)
    finally:
        if pending:
            for future in pending:
                future.cancel()
            if stop is not None:
                stop()
        pool.shutdown(wait=True)


def _count(path: Path) -> int:
    return len(read_results(path))


# -- the summary ------------------------------------------------------------------------------------


def _interval(values: list[float]) -> dict:
    from .stats import bootstrap_mean

    if not values:
        return {"mean": None, "low": None, "high": None, "n": 0}
    found = bootstrap_mean(values)
    return {"mean": found.mean, "low": found.low, "high": found.high, "n": found.n}


def cost(prompt_tokens: int, completion_tokens: int, price_input: float, price_output: float) -> float:
    """What the tokens cost at the prices per million tokens."""
    return (prompt_tokens * price_input + completion_tokens * price_output) / 1e6


def _tokens(results: Iterable[dict]) -> dict:
    prompt = completion = 0
    for item in results:
        usage = item.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
    return {"prompt": prompt, "completion": completion}


def _in_order(results: dict[str, dict]) -> dict[str, dict]:
    """``results`` by story id in the order of the ids (what the bootstrap resamples must not depend on)."""
    return {story_id: results[story_id] for story_id in sorted(results)}


def summarize(
    results: dict[str, dict], judge: dict, stories: int, prices: tuple[float, float] = (0.0, 0.0)
) -> dict:
    """``summary.json``: the judge, the counts, each score's mean with its bootstrap interval,
    hallucinations per story by type, tokens and cost. The stories are taken in the order of their
    ids, whatever the order of ``results`` (the order lines were written in), so the intervals of
    a resumed job are those of an uninterrupted one."""
    results = _in_order(results)
    judged = [item for item in results.values() if item.get("status") == "judged"]
    scores = {name: _interval([item["scores"][name] for item in judged]) for name in CRITERIA}
    scores["hallucinations"] = _interval([len(item["hallucinations"]) for item in judged])
    by_type = {
        kind: (
            sum(h["type"] == kind for item in judged for h in item["hallucinations"]) / len(judged)
            if judged
            else None
        )
        for kind in HALLUCINATION_TYPES
    }
    tokens = _tokens(results.values())
    return {
        "judge": {key: judge.get(key) for key in ("endpoint", "model", "prompt_version", "prompt_sha256")},
        "stories": stories,
        "judged": len(judged),
        "failed": sum(item.get("status") != "judged" for item in results.values()),
        "scores": scores,
        "hallucinations_by_type": by_type,
        "tokens": tokens,
        "cost": cost(tokens["prompt"], tokens["completion"], *prices),
    }


def summarize_pairs(
    results: dict[str, dict],
    judge: dict,
    stories: int,
    run: str,
    against: str,
    prices: tuple[float, float] = (0.0, 0.0),
) -> dict:
    """``pairwise_summary.json``: RUN's win rate over AGAINST (overall and per criterion) with its interval
    (the stories in the order of their ids, as :func:`summarize`)."""
    from .stats import win_rate

    results = _in_order(results)
    judged = [item for item in results.values() if item.get("status") == "judged"]

    def rate(key: str) -> dict:
        outcomes = [item["outcome"][key] for item in judged]
        if not outcomes:
            return {"mean": None, "low": None, "high": None, "n": 0}
        found = win_rate(outcomes)
        return {"mean": found.mean, "low": found.low, "high": found.high, "n": found.n}

    overall = [item["outcome"]["winner"] for item in judged]
    tokens = _tokens(results.values())
    return {
        "judge": {key: judge.get(key) for key in ("endpoint", "model", "prompt_version", "prompt_sha256")},
        "run": run,
        "against": against,
        "stories": stories,
        "judged": len(judged),
        "failed": sum(item.get("status") != "judged" for item in results.values()),
        "win_rate": rate("winner"),
        "criteria": {name: rate(name) for name in CRITERIA},
        "wins": sum(value == 1.0 for value in overall),
        "losses": sum(value == 0.0 for value in overall),
        "ties": sum(value == 0.5 for value in overall),
        "inconsistent": sum(not item["consistent"] for item in judged),
        "tokens": tokens,
        "cost": cost(tokens["prompt"], tokens["completion"], *prices),
    }


# -- the command ------------------------------------------------------------------------------------


def _dataset(settings: Any, manifest: dict) -> tuple[str, str | None]:
    from ..tell.run import run_dataset

    return run_dataset(manifest, settings.dataset, settings.split)


def judge_command(settings: Any) -> int:
    """``storyreasoning evaluate judge``: judge every story of a run (or a pair of runs), resumably."""
    from rich.console import Console

    from ..data.sources import load_stories
    from ..files import lock_folder
    from ..tell.run import check_run_folder
    from .runs import load_outputs

    s = settings
    err = Console(stderr=True, highlight=False)
    run = load_outputs(s.run)
    against = load_outputs(s.against) if s.against is not None else None
    if against is not None and against.path.resolve() == run.path.resolve():
        raise UsageError(f"--against {s.against} is the run itself; give another run of the same stories")
    default = run.path / ("judge" if against is None else f"judge-vs-{against.path.name}")
    out = s.out or default
    check_out(out, default, [run.path] + ([against.path] if against is not None else []))
    check_run_folder(out)  # one that cannot be written: said before the dataset is read
    source, split = _dataset(s, run.manifest)
    stories = load_stories(source, split)
    told = set(run.outputs) & (set(against.outputs) if against is not None else set(run.outputs))
    ids = [story_id for story_id in stories.ids() if story_id in told]
    if not ids:
        theirs = f" and {against.path}" if against is not None else ""
        raise UsageError(
            f"no story of {run.path}{theirs} is in {source}{' split ' + split if split else ''}; "
            "check --dataset and --split"
        )
    unknown = sorted(set(run.outputs) - set(stories.ids()))
    if unknown:
        err.print(
            f"[yellow]{len(unknown)} outputs of {run.path} name stories not in {source} and are not judged "
            f"(first: {', '.join(unknown[:3])})[/yellow]"
        )
    if against is not None:
        unpaired = len(set(run.outputs) ^ set(against.outputs))
        if unpaired:
            err.print(
                f"[yellow]{unpaired} stories are told in only one of {run.path} and {against.path} and are not "
                "compared[/yellow]"
            )
    if s.limit is not None:
        ids = ids[: s.limit]
    with lock_folder(out, refuse=UsageError):  # the one job writing to OUT, for its whole life
        return _judge_into(s, out, run, against, stories, ids, err)


def check_out(out: Path, default: Path, runs: list[Path]) -> None:
    """Refuse an ``--out`` the judge cannot have as its own folder, in one line naming the fix: a file,
    or a run folder (one of ``runs``, or any holding a run's manifest.json or records.jsonl), where the
    judge's settings.json and summary would overwrite or mix with the run's."""
    from ..tell.run import MANIFEST, RECORDS

    fix = f"leave --out out to judge into {default}, or give a folder of its own"
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"--out {out} is a file; evaluate judge writes a folder of judgements (judgements.jsonl, summary.json, "
            f"settings.json) there: {fix}"
        )
    held = [name for name in (MANIFEST, RECORDS) if (out / name).exists()]
    if held or any(out.resolve() == Path(folder).resolve() for folder in runs):
        what = f"it holds a run's {' and '.join(held)}" if held else "the run being judged"
        raise UsageError(
            f"--out {out} is a run folder ({what}); the judge's settings.json and summary would overwrite or mix "
            f"with the run's files: {fix}"
        )


def _judge_into(s: Any, out: Path, run: Any, against: Any, stories: Any, ids: list[str], err: Any) -> int:
    """The rest of :func:`judge_command`, holding ``out``."""
    from rich.console import Console

    from ..errors import Interrupted
    from ..files import write_json_atomic
    from ..settings import write_record
    from ..tell.commands import endpoint_teller
    from ..tell.run import EndpointDown, check_run_folder, settle_errors
    from ..terminal import progress_bar

    path = out / (JUDGEMENTS if against is None else PAIRWISE)
    say = lambda line: err.print(f"[yellow]{line}[/yellow]")  # noqa: E731
    results = read_results(path, say=say) if path.exists() else {}
    try:
        teller = endpoint_teller(s, concurrency=s.concurrency)
    except StoryReasoningError as exc:
        if not getattr(exc, "at_endpoint", False):
            raise
        raise EndpointDown(
            f"{exc}; nothing was judged, run the same command again once the server is up"
        ) from None
    theirs = against.outputs if against is not None else None
    try:
        judge = Judge(teller, max_new_tokens=s.max_new_tokens, seed=s.seed, json_schema=s.json_schema)
        described = judge.describe(pairwise=against is not None)
        check_judge(results, described, path, allow_mixed=s.allow_mixed)
        check_run_folder(out, make=True)
        results = read_results(path, repair=True, say=say)
        failures = unasked(results)
        if failures:
            drop_results(path, failures)
            say(
                f"{len(failures)} lines of {path} are failures before the judge was asked, which an older version "
                f"wrote there (first: {', '.join(failures[:3])}); those stories are judged again"
            )
            results = read_results(path)
        stale = stale_results(
            results, run.outputs, run.path, path, theirs=theirs,
            against=against.path if against is not None else None, recorded=_recorded_runs(out),
        )  # fmt: skip
        if stale:
            drop_results(path, stale)
            say(
                f"{len(stale)} of the judgements in {path} judged outputs that {run.path} no longer holds (their "
                f"stories were told again since; first: {', '.join(stale[:3])}); those stories are judged again"
            )
            results = read_results(path)
        write_record(s, out / "settings.json")
        settle_errors(out, set(results), say)  # a story judged since its failure has no error left
        todo = [story_id for story_id in ids if story_id not in results]
        prices = (s.price_input, s.price_output)
        sources = {"run": str(run.path.resolve())}
        if against is None:
            task = _story_task(judge, run.outputs, described, prices, sources)
        else:
            sources["against"] = str(against.path.resolve())
            task = _pair_task(judge, run.outputs, against.outputs, described, prices, sources)
        if len(todo) < len(ids):
            err.print(f"[dim]{len(ids) - len(todo)} of {len(ids)} stories already judged in {path}[/dim]")
        try:
            with progress_bar(len(todo), f"judging ({judge.describe()['model']})") as advance:
                done = judge_all(
                    todo, task, path, concurrency=s.concurrency, errors=out / ERRORS,
                    load=stories.get, advance=advance, stop=teller.close,
                )  # fmt: skip
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; the {_count(path)} results so far are kept in {path}, run the same command again to continue"
            ) from None
        finally:
            settle_errors(out, set(read_results(path)), say)
    finally:
        teller.close()
    found = read_results(path)
    results = {story_id: found[story_id] for story_id in ids if story_id in found}  # in the dataset's order
    console = Console(highlight=False)
    if against is None:
        summary = summarize(results, described, len(ids), prices)
        write_json_atomic(out / SUMMARY, summary)
        print_summary(console, summary)
        unrecorded = record_location(run.path, out)
        if unrecorded:
            err.print(f"[yellow]{unrecorded}[/yellow]", soft_wrap=True)
        report = run.path / "eval" / "metrics.md"
        if not unrecorded and report.is_file():
            err.print(
                f"[dim]{report} was written before these judgements; run storyreasoning evaluate {s.run} again "
                "to put them in its headline (evaluate compare and the studio read them now)[/dim]",
                soft_wrap=True,
            )
    else:
        summary = summarize_pairs(results, described, len(ids), run.label, against.label, prices)
        write_json_atomic(out / PAIRWISE_SUMMARY, summary)
        print_pairs(console, summary)
    if done.unjudged:
        err.print(
            f"{'1 story was' if done.unjudged == 1 else f'{done.unjudged} stories were'} not judged (first: "
            f"{done.first_error}; all in {out / ERRORS}); run the "
            "same command again to judge them",
            style="yellow", markup=False, soft_wrap=True,
        )  # fmt: skip
    console.print(f"wrote {path} and {out / (SUMMARY if against is None else PAIRWISE_SUMMARY)}")
    return 0 if not done.unjudged else 1


def record_location(run_folder: Path, out: Path) -> str | None:
    """Say in the run folder where its judgements now are, so that evaluate, evaluate compare and the
    studio find them: ``--out`` elsewhere writes ``RUN/judge-location.json`` (``{"out": FOLDER}``), a judge
    into ``RUN/judge`` removes it (the run's last judge is the one they read). Returns the line to show
    when the run folder cannot be written, else None."""
    from ..files import write_json_atomic
    from .report import JUDGE_LOCATION

    pointer = Path(run_folder) / JUDGE_LOCATION
    try:
        if Path(out).resolve() == (Path(run_folder) / "judge").resolve():
            pointer.unlink(missing_ok=True)
        else:
            write_json_atomic(pointer, {"out": str(Path(out).resolve())})
    except OSError as exc:
        return (
            f"{pointer} could not be written ({exc.strerror or exc}), so evaluate compare {run_folder} will not "
            f"find these judgements in {out}"
        )
    return None


def _refused(story_id: str, exc: Any, identity: dict, described: dict) -> dict:
    """The line of a story whose request the server refused (``exc``: a ``TellError``): a failed
    judgement, kept like any other (asking again would be refused again, and paid for). A failure at
    the endpoint (down, timing out, 5xx after the retries) is raised on: the story is asked again next
    time."""
    if exc.at_endpoint:
        raise exc
    return {
        "story_id": story_id, "status": "failed", "error": str(exc), "answers": [], "raw": "",
        **identity, "judge": described, "at": _now(),
    }  # fmt: skip


def _story_task(
    judge: Judge, outputs: dict[str, str], described: dict, prices: tuple[float, float], sources: dict
):
    from ..tell.base import TellError

    def task(story_id: str, sample: Any) -> dict:
        identity = {"run": sources["run"], "output_sha256": output_sha256(outputs[story_id])}
        try:
            judgement = judge.story(sample.frames, outputs[story_id])
        except TellError as exc:
            return _refused(story_id, exc, identity, described)
        line = {"story_id": story_id, **judgement.to_dict()}
        line.update(identity)
        line["raw"] = judgement.answers[-1] if judgement.answers else ""
        line["hallucinations_by_type"] = judgement.by_type()
        line["cost"] = cost(judgement.prompt_tokens, judgement.completion_tokens, *prices)
        line["judge"] = described
        line["at"] = _now()
        return line

    return task


def _pair_task(
    judge: Judge,
    ours: dict[str, str],
    theirs: dict[str, str],
    described: dict,
    prices: tuple[float, float],
    sources: dict,
):
    from ..tell.base import TellError

    def task(story_id: str, sample: Any) -> dict:
        identity = {
            "run": sources["run"], "output_sha256": output_sha256(ours[story_id]),
            "against": sources["against"], "against_sha256": output_sha256(theirs[story_id]),
        }  # fmt: skip
        parts = frame_parts(sample.frames)  # encoded once, shown in both orders
        try:
            first = judge.pair(sample.frames, ours[story_id], theirs[story_id], parts=parts)
            second = (
                judge.pair(sample.frames, theirs[story_id], ours[story_id], parts=parts) if first.ok else None
            )
        except TellError as exc:
            return _refused(story_id, exc, identity, described)
        verdicts = [v for v in (first, second) if v is not None]
        ok = all(v.ok for v in verdicts) and len(verdicts) == 2
        prompt = sum(v.prompt_tokens for v in verdicts)
        completion = sum(v.completion_tokens for v in verdicts)
        line: dict[str, Any] = {
            "story_id": story_id,
            "status": "judged" if ok else "failed",
            "orders": {"run_first": first.to_dict(), "run_second": second.to_dict() if second else None},
            "error": next((v.error for v in verdicts if not v.ok), None),
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            "cost": cost(prompt, completion, *prices),
            "raw": "\n\n".join(answer for v in verdicts for answer in v.answers),
            **identity,
        }
        if ok:
            assert second is not None
            outcome = {key: combine(first.choice[key], second.choice[key]) for key in ("winner", *CRITERIA)}
            line["outcome"] = outcome
            a, b = order_outcomes(first.choice["winner"], second.choice["winner"])
            line["consistent"] = a == b
        line["judge"] = described
        line["at"] = _now()
        return line

    return task


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_summary(console: Any, summary: dict) -> None:
    """The judge's scores as a short table: mean, 95% interval and stories behind each."""
    from rich.table import Table

    judge = summary["judge"]
    console.print(
        f"judge {judge['model']} ({judge['prompt_version']}): {summary['judged']} of {summary['stories']} "
        f"stories judged, {summary['failed']} failed",
        markup=False,
    )
    table = Table(show_edge=False)
    for name, justify in (("score", "left"), ("mean", "right"), ("95% interval", "right"), ("n", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, found in summary["scores"].items():
        label = "hallucinations per story" if name == "hallucinations" else f"{name.replace('_', ' ')} (1-5)"
        interval = "–" if found["low"] is None else f"{found['low']:.2f}–{found['high']:.2f}"
        table.add_row(label, _number(found["mean"]), interval, str(found["n"]))
    for kind, mean in summary["hallucinations_by_type"].items():
        table.add_row(f"  {kind}", _number(mean), "", "")
    console.print(table)
    tokens = summary["tokens"]
    console.print(
        f"tokens: {tokens['prompt']} prompt, {tokens['completion']} completion; cost {summary['cost']:.4f}"
    )


def print_pairs(console: Any, summary: dict) -> None:
    """RUN's win rate over AGAINST as a short table."""
    from rich.table import Table

    console.print(
        f"{summary['run']} against {summary['against']}: {summary['judged']} of {summary['stories']} stories "
        f"judged in both orders ({summary['wins']} won, {summary['losses']} lost, {summary['ties']} tied, "
        f"{summary['inconsistent']} of them order-inconsistent, counted as ties)",
        markup=False,
    )
    table = Table(show_edge=False)
    for name, justify in (("win rate", "left"), ("mean", "right"), ("95% interval", "right"), ("n", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows = [("overall", summary["win_rate"])] + [
        (k.replace("_", " "), v) for k, v in summary["criteria"].items()
    ]
    for label, found in rows:
        interval = "–" if found["low"] is None else f"{found['low']:.2f}–{found['high']:.2f}"
        table.add_row(label, _number(found["mean"]), interval, str(found["n"]))
    console.print(table)
    tokens = summary["tokens"]
    console.print(
        f"tokens: {tokens['prompt']} prompt, {tokens['completion']} completion; cost {summary['cost']:.4f}"
    )


__all__ = [
    "CRITERIA",
    "HALLUCINATION_TYPES",
    "PROMPT_SHA256",
    "PROMPT_VERSION",
    "AnswerError",
    "Judge",
    "Judgement",
    "Verdict",
    "check_judgement",
    "check_verdict",
    "combine",
    "judge_command",
    "judge_story",
    "order_outcomes",
    "parse_answer",
    "summarize",
    "summarize_pairs",
]

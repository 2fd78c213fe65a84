"""The dataset card: ``README.md`` beside a dataset, one format for every dataset storyreasoning writes.

``storyreasoning build`` writes it at the end of every build (:func:`write_dataset_card`, from the
story folders); ``data convert --to parquet``, ``data contrastive --to parquet`` and ``data push``
write it beside the parquet shards (:func:`write_parquet_card`, from the shards themselves).

The card is a Hugging Face dataset card: YAML front matter as the Hub reads it (license,
task categories, tags, size category, the ``configs`` that map each split to its parquet
shards ``data/{split}-*`` as ``storyreasoning data push`` writes them, and ``dataset_info``
with the columns and the stories per split), then prose: what the dataset is, its counts
(stories, frames, characters, per split), how it was built (the writer, the perception
models with their ids and versions or checksums, the validator's verdicts and the stories
kept although invalid, read from ``build.json``, ``settings.json`` and every story's
``meta.json``), where the frames came from, the format and how to cite StoryReasoning.

A parquet dataset keeps no ``meta.json``: its card counts what the shards hold and reads the
build record (``build.json``, ``settings.json``) of the source it was made from when that is a
local folder that has one; what no record says (the writer, the models, the license, which
stories the validator passed) the card calls unknown, it never guesses.

:func:`gather` and :func:`gather_parquet` read a folder into :class:`DatasetFacts`;
:func:`dataset_card` is a pure function of them; the writers write the card whole (never
appended), so a resumed run's card describes the folder as it now is.

A dataset written by the template writer says, in its card and in every story's record,
that its texts are an offline templated BASELINE: fixed sentences filled with what the
detectors saw, not written by a model.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import file_error
from ..files import write_text_atomic

CARD = "README.md"
#: Written into every dataset card storyreasoning generates (so a later run may replace it).
CARD_MARKER = "<!-- dataset card written by storyreasoning -->"
#: What a generated card says where the repository id goes when it is not known yet (data push fills it in).
REPO_PLACEHOLDER = "OWNER/NAME"

CITATION_STORYREASONING = """@misc{oliveira2025storyreasoningdatasetusingchainofthought,
      title={StoryReasoning Dataset: Using Chain-of-Thought for Scene Understanding and Grounded Story Generation},
      author={Daniel A. P. Oliveira and David Martins de Matos},
      year={2025},
      eprint={2505.10292},
      archivePrefix={arXiv},
      primaryClass={cs.CV},
      url={https://arxiv.org/abs/2505.10292}
}"""

PROJECT = "https://github.com/storyreasoning/storyreasoning"
PUBLISHED = "https://huggingface.co/datasets/daniel3303/StoryReasoning"
PAPER = "https://arxiv.org/abs/2505.10292"
_VIDEO_SOURCE = re.compile(r".+@\d+(?:\.\d+)?s")
#: What the template writer is, in the card's words.
TEMPLATE_NOTE = (
    "an offline templated BASELINE: the chain-of-thought tables and the stories are fixed sentences filled "
    "with what the detectors saw (people, their clothing colours, a background region, the light), not "
    "written by a language model"
)


@dataclass
class SplitCounts:
    """What one split holds."""

    stories: int = 0
    frames: int = 0
    characters: int = 0  # distinct char ids per story, summed over the stories
    invalid: list[str] = field(default_factory=list)  # stories kept although not well-structured
    groups: set[str] = field(default_factory=set)  # identity groups (videos, folders)
    #: the split's data in bytes, for the card's ``num_bytes`` (which ``datasets`` needs beside
    #: ``num_examples`` to read the splits): the parquet row groups uncompressed, else the story
    #: folders' files
    bytes: int = 0


@dataclass
class DatasetFacts:
    """Everything the card says, read once from the dataset folder (:func:`gather`)."""

    name: str
    splits: dict[str, SplitCounts]  # "train" only when the folder has no splits.json
    split_file: dict | None  # splits.json
    runs: list[dict]  # the build records: each {"writer": …, "perceiver": …, "settings": …}
    settings: dict  # settings.json of the last run
    sources: str  # "videos" | "image folders" | "videos and image folders"
    writers: list[str] = field(default_factory=list)  # writer names the stories' meta.json record
    unreadable: list[str] = field(default_factory=list)  # story folders that could not be read
    #: None: built in this folder by ``build``; else the command that wrote it and what from, as the card
    #: says it (``data convert`` from `stories`)
    origin: str | None = None

    @property
    def license(self) -> str | None:
        """The license the last build was given (``build --license``), None when none was."""
        value = self.settings.get("license")
        return value if isinstance(value, str) and value else None

    @property
    def total(self) -> SplitCounts:
        out = SplitCounts()
        for counts in self.splits.values():
            out.stories += counts.stories
            out.frames += counts.frames
            out.characters += counts.characters
            out.invalid += counts.invalid
            out.bytes += counts.bytes
            out.groups |= counts.groups
        return out

    @property
    def baseline(self) -> bool:
        """Whether any story was written by the template writer."""
        named = set(self.writers) | {str((r.get("writer") or {}).get("writer")) for r in self.runs}
        return "template" in named


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _runs(build: Any) -> list[dict]:
    """The build records of ``build.json``: one, or the list a build continued with other settings keeps."""
    if not isinstance(build, dict):
        return []
    for key in ("entries", "runs"):
        if isinstance(build.get(key), list):
            return [r for r in build[key] if isinstance(r, dict)] or [build]
    return [build]


_HEX = frozenset("0123456789abcdef")


def models_in(description: Any, path: tuple[str, ...] = ()) -> dict[str, dict]:
    """Every model a description lists under a ``models`` key, by where it sits
    (``perceiver/detector``, ``perceiver/faces/shape_predictor_5_face_landmarks.dat``, ``writer/language_model``)."""
    out: dict[str, dict] = {}
    if isinstance(description, dict):
        for key, value in description.items():
            if key == "models" and isinstance(value, dict):
                for role, model in value.items():
                    where = "/".join((*path, str(role)))
                    if isinstance(model, dict) and "id" in model:
                        out[where] = {"id": model["id"], "revision": model.get("revision")}
                    elif isinstance(model, str) and len(model) == 64 and set(model) <= _HEX:
                        out[where] = {"id": str(role), "revision": f"sha256 {model}"}
            else:
                out.update(models_in(value, (*path, str(key))))
    return out


def _tally(counts: SplitCounts, sample: Any, kinds: set[str]) -> None:
    """Add one story (a :class:`~storyreasoning.data.StorySample`) to its split's counts, and the kinds of source its frames come from to ``kinds``."""
    counts.stories += 1
    counts.frames += sample.frame_count
    counts.characters += len({c.id for image in sample.cot.images for c in image.characters})
    for i in range(sample.frame_count):
        counts.groups.add(sample.frame_group(i))
        kinds.add("videos" if _VIDEO_SOURCE.fullmatch(sample.frame_source(i)) else "image folders")


def _ordered(splits: dict[str, SplitCounts]) -> dict[str, SplitCounts]:
    order = {"train": 0, "test": 1}
    return {k: splits[k] for k in sorted(splits, key=lambda k: (order.get(k, 2), k))}


def gather(out: Path) -> DatasetFacts:
    """Read a built dataset folder: its records and every story folder (texts parsed; no image decoded)."""
    from ..data.folder import is_story_folder, read_story_folder
    from ..data.splits import read_splits

    out = Path(out)
    split_file = read_splits(out)
    assigned = (split_file or {}).get("stories", {})
    splits: dict[str, SplitCounts] = {}
    writers: set[str] = set()
    kinds: set[str] = set()
    unreadable: list[str] = []
    folders = sorted(
        p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and is_story_folder(p)
    )
    for folder in folders:
        try:
            sample = read_story_folder(folder)
        except Exception:  # the card still describes the rest; the data commands name what is wrong
            unreadable.append(folder.name)
            continue
        counts = splits.setdefault(assigned.get(folder.name, "train"), SplitCounts())
        _tally(counts, sample, kinds)
        counts.bytes += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        record = sample.meta.get("build") if isinstance(sample.meta.get("build"), dict) else {}
        if record.get("well_structured") is False:
            counts.invalid.append(sample.story_id)
        if record.get("writer"):
            writers.add(str(record["writer"]))
    splits = _ordered(splits)
    settings = _read_json(out / "settings.json") or {}
    runs = _runs(_read_json(out / "build.json"))
    return DatasetFacts(
        name=out.resolve().name,
        splits=splits or {"train": SplitCounts()},
        split_file=split_file,
        runs=runs,
        settings=settings if isinstance(settings, dict) else {},
        sources=" and ".join(sorted(kinds, reverse=True)) or "frames",
        writers=sorted(writers),
        unreadable=unreadable,
    )


def _source_name(source: str | Path) -> str:
    """How the card names a source: a local folder or file by its name (a card is public), a hub id as is."""
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else str(source)


def gather_parquet(out: Path, *, command: str, source: str | Path | None = None) -> DatasetFacts:
    """Read the parquet shards ``out/data/{split}-*.parquet`` (no image column) into facts for the card.

    ``command`` wrote them (``data convert``) from ``source``; when ``source`` is a local folder with a
    build record (``build.json``, ``settings.json``), the card reports that build and its license.
    """
    import pyarrow.parquet as pq

    from .sample import Frame, StorySample

    out = Path(out)
    files: dict[str, list[Path]] = {}
    for path in sorted((out / "data").glob("*.parquet")):
        files.setdefault(path.name.split("-", 1)[0], []).append(path)
    splits: dict[str, SplitCounts] = {}
    kinds: set[str] = set()
    columns = ["story_id", "frame_count", "chain_of_thought", "frame_meta"]
    for split, paths in files.items():
        counts = splits.setdefault(split, SplitCounts())
        for path in paths:
            try:
                shard = pq.ParquetFile(path)
                layout = shard.metadata
                counts.bytes += sum(layout.row_group(i).total_byte_size for i in range(layout.num_row_groups))
                batches = shard.iter_batches(batch_size=256, columns=columns)
                rows = [row for batch in batches for row in batch.to_pylist()]
            except Exception as exc:  # pyarrow's errors: the shard was just written, so this is the disk
                raise file_error(OSError(None, str(exc), str(path)), "read the parquet shard") from None
            for row in rows:
                n = int(row["frame_count"] or 0)
                meta = json.loads(row["frame_meta"]) if row.get("frame_meta") else None
                # the counts need the texts and frame_meta only: the frames stand in for the images unread
                sample = StorySample(
                    str(row["story_id"]),
                    [Frame(data=b"")] * n,
                    row["chain_of_thought"] or "",
                    "",
                    frame_meta=meta if isinstance(meta, list) and len(meta) == n else None,
                )
                _tally(counts, sample, kinds)
    settings: Any = {}
    runs: list[dict] = []
    if source is not None and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        settings = _read_json(folder / "settings.json") or {}
        runs = _runs(_read_json(folder / "build.json"))
    return DatasetFacts(
        name=out.resolve().name,
        splits=_ordered(splits) or {"train": SplitCounts()},
        split_file=None,
        runs=runs,
        settings=settings if isinstance(settings, dict) else {},
        sources=" and ".join(sorted(kinds, reverse=True)) or "frames",
        origin=f"`{command}`" + (f" from `{_source_name(source)}`" if source is not None else ""),
    )


# -- the card -----------------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


def metadata(facts: DatasetFacts) -> dict:
    """The card's YAML front matter, as the Hub reads it."""
    baseline = facts.baseline
    tags = ["storyreasoning", "visual-storytelling", "grounded-generation", "chain-of-thought"]
    tags += ["baseline", "templated"] if baseline else []
    return {
        "pretty_name": facts.name,
        "license": facts.license or "unknown",
        "language": ["en"],
        "task_categories": ["image-text-to-text"],
        "tags": tags,
        "size_categories": [_size_category(facts.total.stories)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*"} for name in facts.splits],
            }
        ],
        "dataset_info": {
            "features": [
                {"name": "story_id", "dtype": "string"},
                {"name": "images", "list": "image"},
                {"name": "frame_count", "dtype": "int32"},
                {"name": "chain_of_thought", "dtype": "string"},
                {"name": "story", "dtype": "string"},
                {"name": "frame_meta", "dtype": "string"},
            ],
            "splits": [
                {"name": name, "num_bytes": c.bytes, "num_examples": c.stories}
                for name, c in facts.splits.items()
            ],
        },
    }


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def _writer_lines(writer: dict) -> list[str]:
    name = writer.get("writer")
    if name == "template":
        return [
            f"- **Writer: the template writer**, {TEMPLATE_NOTE}. They show the format, the boxes and the "
            "identities across frames; they are not stories to learn storytelling from."
        ]
    if name == "chat":
        endpoint = writer.get("endpoint") or {}
        sampling = writer.get("sampling") or {}
        shown = ", ".join(f"{k} {v}" for k, v in sampling.items() if v is not None)
        return [
            f"- **Writer: the language model `{endpoint.get('model', '?')}`** behind an OpenAI-compatible "
            f"endpoint ({endpoint.get('backend', 'openai')}; its revision is whatever the server loaded, not "
            f"reported to the builder), which wrote the CoT from the frames and the detected entities, then the "
            f"story; each text was checked and sent back with the validator's findings, up to "
            f"{writer.get('max_tries', '?')} attempts" + (f"; sampling: {shown}" if shown else "") + "."
        ]
    return [f"- Writer: `{name}`" + (f" ({writer['note']})" if writer.get("note") else "") + "."]


def _model_rows(run: dict) -> list[tuple[str, str, str]]:
    """``(role, model, revision)`` of every model a build record names (its ``models`` keys, see
    :mod:`.provenance`), after the baseline's OpenCV detectors when it perceived."""
    rows = []
    perceiver = run.get("perceiver") or {}
    if perceiver.get("baseline") or perceiver.get("backend") == "baseline":
        detector = perceiver.get("detector") or {}
        versions = perceiver.get("versions") or {}
        what = ", ".join(str(v) for v in (detector.get("faces"), detector.get("figures")) if v)
        rows.append(
            ("people (baseline)", what or "OpenCV detectors", f"opencv {versions.get('opencv', '?')}")
        )
        reid = perceiver.get("reid") or {}
        if reid.get("features"):
            rows.append(
                ("re-identification (baseline)", str(reid["features"]), f"threshold {reid.get('threshold')}")
            )
    for where, model in models_in({k: v for k, v in run.items() if k in ("perceiver", "writer")}).items():
        revision = model.get("revision")
        if revision is None:
            revision = "not reported by the endpoint" if where.startswith("writer/") else "not recorded"
        rows.append((where.split("/", 1)[-1], str(model.get("id")), str(revision)))
    if not rows:  # a record of an earlier version, without ``models``
        for key in ("detector", "embedder"):
            if isinstance(perceiver.get(key), str):
                rows.append((key, perceiver[key], "not recorded"))
    return rows


def _public(value: Any) -> Any:
    """A recorded value with local absolute paths cut to their last part (a card is public)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return f"…/{Path(value).name}"
    return value


def dataset_card(facts: DatasetFacts, *, repo_id: str | None = None) -> str:
    """The dataset card (``README.md``) for ``facts``: YAML front matter, then what, how many, how, format, cite."""
    import yaml

    total = facts.total
    splits = facts.splits
    split_fraction = (facts.split_file or {}).get("train_fraction")
    front = yaml.safe_dump(metadata(facts), sort_keys=False, allow_unicode=True).rstrip("\n")
    lines = ["---", front, "---", "", f"# {facts.name}", ""]
    lines += [
        "A grounded visual storytelling dataset in the [StoryReasoning]"
        f"({PUBLISHED}) format: each story is a sequence of frames, a chain-of-thought scene analysis "
        "(characters, objects and setting of every frame, with pixel boxes, and the narrative structure) and a "
        "story whose words are tied to image regions by `<gdi>`, `<gdo>`, `<gda>` and `<gdl>` tags, with the same "
        "id for the same character in every frame. "
        + (
            f"Built with [storyreasoning]({PROJECT}) `build` from {facts.sources}."
            if facts.origin is None
            else f"Written with [storyreasoning]({PROJECT}) {facts.origin}"
            + (", which storyreasoning `build` made" if facts.runs else "")
            + f"; the frames come from {facts.sources}."
        ),
        "",
    ]
    if facts.baseline:
        lines += [
            f"> **Baseline texts.** The texts of this dataset were written by the template writer, {TEMPLATE_NOTE}. "
            "Use it to test a pipeline or as a reference point, not as storytelling data.",
            "",
        ]
    lines += [
        "## Contents",
        "",
        "| split | stories | frames | characters | frames per story |",
        "|---|---|---|---|---|",
    ]
    shown = dict(splits)
    if len(splits) > 1:
        shown["all"] = total
    for name, c in shown.items():
        per = f"{c.frames / c.stories:.2f}" if c.stories else "–"
        lines.append(f"| {name} | {c.stories} | {c.frames} | {c.characters} | {per} |")
    lines += [
        "",
        "Characters are counted per story (the distinct `char` ids of its chain-of-thought), summed over the "
        f"stories. The frames come from {len(total.groups)} identity group{'' if len(total.groups) == 1 else 's'} "
        "(a video, or a folder of frames).",
        "",
    ]
    if split_fraction is not None:
        lines += [
            "### Splits",
            "",
            f"`build --split {split_fraction}`: stories are split by identity group, so no video or folder of "
            "frames (and so no person) is in both splits. Stories sharing a group form one unit; a unit is "
            "`train` when the SHA-256 of its smallest group name, read as a number in [0, 1), is below "
            f"{split_fraction}, else `test`. The rule does not depend on the other stories, so a build that "
            "grows keeps earlier stories where they were; with few groups the shares can differ from the "
            f"fraction (here {_pct(splits.get('train', SplitCounts()).stories, total.stories)} train).",
            "",
        ]
    elif facts.origin is not None:
        lines += [
            f"Splits: {', '.join(f'`{name}`' for name in splits)}, as written by {facts.origin}.",
            "",
        ]
    else:
        lines += ["There is no test split: the build was not given `--split`.", ""]

    lines += ["## How it was built", ""]
    if facts.origin is not None and not facts.runs:
        lines += [
            f"- Unknown: {facts.origin} read no build record (`build.json`), so the writer of the texts and the "
            "models behind them are not known here.",
        ]
    elif facts.origin is not None:
        lines += ["The source's build record (`build.json`):", ""]
    runs = (facts.runs or [{}]) if facts.origin is None else facts.runs
    for k, run in enumerate(runs, start=1):
        if len(runs) > 1:
            lines += [f"Run {k} of {len(runs)}:", ""]
        lines += _writer_lines(run.get("writer") or {"writer": facts.settings.get("writer")})
        rows = _model_rows(run)
        if rows:
            lines += ["- Models:", "", "  | role | model | revision |", "  |---|---|---|"]
            lines += [f"  | {role} | {model} | {version} |" for role, model, version in rows]
        lines.append("")
    invalid = total.invalid
    kept = bool(facts.settings.get("keep_invalid"))
    if facts.origin is not None:
        lines.append(
            f"- Validation: unknown: {facts.origin} does not validate and parquet keeps no verdicts"
            + ("; the source's build checked every story when it wrote it" if facts.runs else "")
            + "; `storyreasoning data validate` checks the stories."
        )
    else:
        lines.append(
            "- Validation: every story was checked by the format validator against its frames' sizes; "
            + (
                f"{len(invalid)} of {total.stories} stories ({_pct(len(invalid), total.stories)}) were kept although "
                "not well-structured (`--keep-invalid`)"
                + (
                    ": " + ", ".join(f"`{s}`" for s in invalid[:50]) + (" …" if len(invalid) > 50 else "")
                    if invalid
                    else ""
                )
                if kept or invalid
                else "stories that failed it were left out"
            )
            + "."
        )
    if facts.unreadable:
        lines.append(f"- {len(facts.unreadable)} story folders could not be read and are not counted: "
                     + ", ".join(f"`{s}`" for s in facts.unreadable[:20]) + ".")  # fmt: skip
    frames_root = facts.settings.get("frames")
    lines += [
        f"- Source of the frames: {facts.sources}"
        + (f" (`{Path(str(frames_root)).name}`)" if frames_root else "")
        + "; each frame's `frame_meta` holds its identity `group` and its `source`.",
        "",
    ]
    # the models of each run, and its settings where they are not the last run's (settings.json)
    shown_runs = [
        {k: v for k, v in run.items() if k != "settings" or v != facts.settings} for run in runs if run
    ]
    recorded = {"settings": _public(facts.settings), "runs": _public(shown_runs)}
    if facts.origin is None or facts.settings or shown_runs:
        lines += [
            "<details><summary>The recorded settings and models (settings.json, build.json)</summary>",
            "",
            "```json",
            json.dumps(recorded, indent=2, ensure_ascii=False, default=str),
            "```",
            "",
            "</details>",
            "",
        ]
    lines += [
        "## Format",
        "",
        "One row per story, the columns of the published StoryReasoning dataset: `story_id`, `images` (the frames, "
        "bytes as read), `frame_count`, `chain_of_thought` (the markdown tables, without `<think>` tags) and "
        "`story` (the tagged story); and `frame_meta`, a JSON list with one object per frame (`group`, "
        "`source`). The tags: `<gdi imageN>` wraps the text of frame N, `<gdo charN>` a character or object "
        "mention, `<gda charN>` an action, `<gdl bgN>` a place; boxes are `x1,y1,x2,y2` pixels of the original "
        f"frame. See the [StoryReasoning dataset card]({PUBLISHED}) and the [paper]({PAPER}).",
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'stories = load_dataset("{repo_id or REPO_PLACEHOLDER}")',
        "```",
        "",
        "or, with storyreasoning, `storyreasoning data info "
        + (repo_id or REPO_PLACEHOLDER)
        + "` (statistics) and `storyreasoning data show … STORY_ID`.",
        "",
        "## License",
        "",
        (
            f"`{facts.license}` (set with `storyreasoning build --license`); the frames keep the license of their "
            "source."
            if facts.license
            else "Not set (`unknown` above): the frames keep the license of their source; set it before you "
            "publish (`storyreasoning build … --license ID` rewrites this card)."
            if facts.origin is None
            else "Not known (`unknown` above): no build record of the source names one, and the frames keep the "
            "license of their source; set it before you publish (edit `license:` above and delete the last line of "
            "this card, so that storyreasoning leaves the card as you wrote it)."
        ),
        "",
        "## Citation",
        "",
        "The format and the pipeline are those of StoryReasoning:",
        "",
        "```bibtex",
        CITATION_STORYREASONING,
        "```",
        "",
        CARD_MARKER,
        "",
    ]
    return "\n".join(lines)


def write_dataset_card(out: Path, *, repo_id: str | None = None) -> Path | None:
    """Write ``out/README.md`` afresh (atomically) from the folder as it is now.

    A ``README.md`` storyreasoning did not write (no :data:`~storyreasoning.data.hub.CARD_MARKER`) is
    someone's own card: it is left alone and None returned.
    """
    target = Path(out) / CARD
    if target.is_file() and CARD_MARKER not in target.read_text(encoding="utf-8", errors="replace"):
        return None
    return _write(target, dataset_card(gather(out), repo_id=repo_id))


def write_parquet_card(
    out: Path, *, command: str, source: str | Path | None = None, repo_id: str | None = None
) -> Path | None:
    """Write ``out/README.md`` afresh (atomically) for the parquet shards in ``out/data`` (:func:`gather_parquet`).

    A card storyreasoning did not write is left alone and None returned, as :func:`write_dataset_card` does.
    """
    target = Path(out) / CARD
    if target.is_file() and CARD_MARKER not in target.read_text(encoding="utf-8", errors="replace"):
        return None
    facts = gather_parquet(out, command=command, source=source)
    return _write(target, dataset_card(facts, repo_id=repo_id))


def _write(target: Path, card: str) -> Path:
    try:
        write_text_atomic(target, card)
    except OSError as exc:
        raise file_error(exc, "write the dataset card") from None
    return target


__all__ = [
    "TEMPLATE_NOTE",
    "DatasetFacts",
    "SplitCounts",
    "dataset_card",
    "gather",
    "gather_parquet",
    "metadata",
    "models_in",
    "write_dataset_card",
    "write_parquet_card",
]

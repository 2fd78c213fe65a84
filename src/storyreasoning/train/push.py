"""``storyreasoning train push``: a trained model on the Hugging Face Hub, with a model card written from its record.

What goes up is one model folder: a training folder's ``final/`` (model or LoRA adapter,
processor, ``storyreasoning.json``) or a folder ``train merge`` wrote. Its ``README.md``
is the model card, generated from what the folder and its training recorded:

* the base model, the kind of training (SFT, DPO), the mode and the LoRA shape;
* the data: the dataset and split (SFT) or the pairs folders with the dataset and runs
  each came from (DPO), and how the stories were fitted to the length limit (``fit``);
* the resolved settings (``storyreasoning.json``, else the training folder's
  ``settings.json``), the step count and the final metrics;
* the story check's last numbers from ``log.jsonl`` (``--eval-every``), and an
  evaluation report (``storyreasoning evaluate``'s ``eval/metrics.json``, ``--eval``);
* the license (the base model's, found in its card, a known table, or ``--license``)
  and the citations of StoryReasoning (and of QwenStoryteller2 for DPO).

:func:`gather` reads those files into :class:`CardFacts`; :func:`model_card` turns them
into markdown and is a pure function. :func:`push` writes the card as the folder's
``README.md`` and uploads the folder with huggingface_hub (``create_repo``,
``create_branch`` for ``--revision``, ``upload_folder``); ``--dry-run`` stops after the
card and lists the files that would go up. A ``README.md`` the folder already holds is
replaced only when ``train push`` wrote it or it is the blank template PEFT saves beside an
adapter; any other is never overwritten: pass it (or another card) with ``--card``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.hub import CITATION_STORYREASONING, upload_folder
from ..errors import UsageError
from ..files import write_text_atomic
from ..settings import REQUIRED, argument, option

MANIFEST = "storyreasoning.json"
CARD = "README.md"
MARKER = "<!-- model card written by storyreasoning train push -->"
#: A line of huggingface_hub's blank card template, which PEFT saves beside every adapter: such a card is replaced.
TEMPLATE_LINE = "<!-- Provide a quick summary of what the model is/does. -->"
PROJECT = "https://github.com/storyreasoning/storyreasoning"

#: Licenses of base models a card is likely to name, when the base model's own card cannot be read.
KNOWN_LICENSES = {
    "Qwen/Qwen2.5-VL-3B-Instruct": "other",  # Qwen RESEARCH LICENSE
    "Qwen/Qwen2.5-VL-7B-Instruct": "apache-2.0",
    "Qwen/Qwen2.5-VL-32B-Instruct": "apache-2.0",
    "Qwen/Qwen2.5-VL-72B-Instruct": "other",  # Qwen LICENSE
    "daniel3303/QwenStoryteller": "apache-2.0",
    "daniel3303/QwenStoryteller2": "apache-2.0",
}
DATASET_LICENSES = {"daniel3303/StoryReasoning": "CC-BY-ND-4.0"}

CITATION_QWENSTORYTELLER2 = """@misc{oliveira2025entityreidentificationvisualstorytelling,
      title={Entity Re-identification in Visual Storytelling via Contrastive Reinforcement Learning},
      author={Daniel A. P. Oliveira and David Martins de Matos},
      year={2025},
      eprint={2507.07340},
      archivePrefix={arXiv},
      primaryClass={cs.CV},
      url={https://arxiv.org/abs/2507.07340}
}"""

#: The evaluation numbers a card shows first: ``(family, key, label)``, as QwenStoryteller2's card names them.
HEADLINE = (
    ("grounding", "precision_characters_micro", "Character precision"),
    ("grounding", "precision_objects_micro", "Object precision"),
    ("grounding", "precision_micro", "Total precision"),
    ("grounding", "recall_characters_micro", "Character recall"),
    ("grounding", "recall_objects_micro", "Object recall"),
    ("grounding", "recall_micro", "Total recall"),
    ("grounding", "f1_micro", "F1"),
    ("grounding", "map", "mAP"),
    ("identity", "idf1_micro", "ID F1"),
    ("identity", "link_recall_micro", "Cross-frame link recall"),
    ("identity", "link_precision_micro", "Cross-frame link precision"),
    ("consistency", "well_structured_rate", "Well-structured"),
    ("consistency", "char_persistence_ge5", "Character persistence on ≥5 frames"),
    ("consistency", "obj_persistence_ge5", "Object persistence on ≥5 frames"),
    ("consistency", "pronoun_grounding_char", "Pronoun grounding (characters)"),
    ("consistency", "hallucinations_per_story", "Hallucinations per story"),
    ("language", "meteor", "METEOR"),
    ("language", "rouge_l", "ROUGE-L"),
    ("language", "bleu_4", "BLEU-4"),
    ("language", "cider", "CIDEr"),
)
CHECKS = (
    ("eval_well_structured", "Well-structured"),
    ("eval_grounding_f1", "Grounding F1"),
    ("eval_link_recall", "Cross-frame link recall"),
    ("eval_truncated", "Cut by the token limit"),
)


@dataclass(frozen=True, kw_only=True)
class PushSettings:
    """Upload a trained model to the Hugging Face Hub with a generated model card."""

    folder: Path = argument(
        help="A training folder (its final/ goes up), a final/ folder, or a folder train merge wrote."
    )
    repo_id: str = option(REQUIRED, "--repo-id", help="Hub repository, owner/name (created when missing).")
    private: bool = option(False, help="Create the repository private.")
    revision: str | None = option(None, help="Branch to push to (created when missing; default main).")
    eval_report: Path | None = option(
        None, "--eval", metavar="RUN_OR_REPORT",
        help="An evaluation of this model for the card: a run folder holding eval/metrics.json, the report "
        "folder or the file (storyreasoning evaluate writes it).",
    )  # fmt: skip
    license: str | None = option(None, help="The model's license (default: the base model's).")
    card: Path | None = option(None, help="Upload this README.md instead of the generated card.")
    commit_message: str | None = option(None, help="Commit message (default: says what was pushed).")
    dry_run: bool = option(
        False, help="Write the card and list the files that would go up; nothing leaves the machine."
    )
    token: str | None = option(
        None, secret=True, show_default=False, help="Hub token (default: HF_TOKEN or the saved login)."
    )


# -- what is pushed --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The folder that goes up, its record, and the training folder behind it (None when unknown)."""

    model: Path
    manifest: dict
    training: Path | None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is unreadable ({type(exc).__name__}); check the folder") from None


def _training_of(model: Path) -> Path | None:
    parent = model.parent
    return parent if model.name == "final" and (parent / "settings.json").is_file() else None


def locate(folder: Path) -> Source:
    """The model folder ``folder`` names (itself, or a training folder's ``final/``), or one clear error."""
    folder = Path(folder)
    if (folder / "final" / MANIFEST).is_file():
        return Source(folder / "final", _read_json(folder / "final" / MANIFEST), folder)
    if (folder / MANIFEST).is_file():
        manifest = _read_json(folder / MANIFEST)
        training = _training_of(folder)
        if training is None and manifest.get("merged_from"):  # a merged adapter: its training folder
            training = _training_of(Path(manifest["merged_from"]))
        return Source(folder, manifest, training)
    if (folder / "settings.json").is_file():
        raise UsageError(
            f"{folder} holds a training that has not finished (no final/); run its command again to finish it, "
            "then push"
        )
    raise UsageError(
        f"{folder} holds no trained model (no {MANIFEST}); pass a training folder, its final/, or a folder "
        "storyreasoning train merge wrote"
    )


def upload_files(model: Path) -> list[Path]:
    """The files ``upload_folder`` sends from ``model`` (relative paths), in order; the card included."""
    skip = (".git", ".cache")
    files = [
        p.relative_to(model)
        for p in model.rglob("*")
        if p.is_file() and not any(part in skip for part in p.relative_to(model).parts)
    ]
    return sorted(set(files) | {Path(CARD)})


# -- the facts and the card ----------------------------------------------------------------------------------


@dataclass
class CardFacts:
    """Everything a card says, read from files once (:func:`gather`); :func:`model_card` only formats it."""

    repo_id: str
    manifest: dict
    settings: dict
    fit: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)  # log.jsonl lines holding the story check's numbers
    pairs: list[dict] = field(default_factory=list)  # DPO: each pairs folder's manifest, with its "folder"
    evaluation: dict | None = None  # an evaluate report's metrics.json
    license: str | None = None  # None: unknown
    license_source: str = ""  # where the license came from
    local: frozenset[str] = frozenset()  # names in the record that are folders here, not hub ids


def base_license(
    base: str | None, *, revision: str | None = None, _seen: frozenset = frozenset()
) -> tuple[str | None, str]:
    """``(license, where it came from)`` of a base model: its card's metadata, our record, a known table or the hub."""
    if not base or base in _seen:
        return None, ""
    path = Path(base)
    if path.is_dir():
        if (path / CARD).is_file():
            from huggingface_hub.repocard import metadata_load

            found = (metadata_load(path / CARD) or {}).get("license")
            if found:
                return str(found), f"the card of {base}"
        if (path / MANIFEST).is_file():  # one of ours (a merged model): its own base's license
            inner = _read_json(path / MANIFEST)
            return base_license(inner.get("base_model"), revision=inner.get("revision"), _seen=_seen | {base})
        return None, ""
    if base in KNOWN_LICENSES:
        return KNOWN_LICENSES[base], f"the card of {base}"
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return None, ""
    try:  # the hub's record of the base model's card
        from huggingface_hub import HfApi

        info = HfApi().model_info(base, revision=revision)
        found = getattr(getattr(info, "card_data", None), "license", None)
    except Exception:  # unreachable hub, gated or unknown repo: the card says it could not tell
        return None, ""
    return (str(found), f"the card of {base}") if found else (None, "")


def _check_lines(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a crash
            continue
        if isinstance(record, dict) and any(key in record for key, _ in CHECKS):
            out.append(record)
    return out


def gather(
    source: Source, *, repo_id: str, eval_report: Path | None = None, license: str | None = None
) -> CardFacts:
    """Read what the card needs: the record, the training folder's files, the pairs manifests, the report."""
    manifest = source.manifest
    settings = manifest.get("settings") or {}
    fit = manifest.get("fit") or {}
    checks: list[dict] = []
    if source.training is not None:
        if not settings and (source.training / "settings.json").is_file():
            settings = _read_json(source.training / "settings.json")
        if not fit and (source.training / "fit.json").is_file():
            fit = _read_json(source.training / "fit.json")
        checks = _check_lines(source.training / "log.jsonl")
    pairs = []
    for folder in settings.get("pairs") or ():
        path = Path(folder) / "manifest.json"
        pairs.append({"folder": str(folder), **(_read_json(path) if path.is_file() else {})})
    evaluation = None
    if eval_report is not None:
        from ..evaluate.report import load_report

        evaluation = load_report(eval_report)
    if license:
        found, where = license, "--license"
    else:
        found, where = base_license(manifest.get("base_model"), revision=manifest.get("revision"))
    facts = CardFacts(repo_id=repo_id, manifest=manifest, settings=settings, fit=fit, checks=checks, pairs=pairs,
                      evaluation=evaluation, license=found, license_source=where)  # fmt: skip
    # folders here, and the datasets a pairs manifest resolved (a local one typed relative, read elsewhere)
    resolved = {(p.get("dataset") or {}).get("source") for p in pairs if (p.get("dataset") or {}).get("path")}
    facts.local = frozenset(name for name in _named(facts) if Path(name).exists() or name in resolved)
    return facts


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _hub_id(text: Any, facts: CardFacts) -> bool:
    import re

    return (
        bool(text) and str(text) not in facts.local and bool(re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", str(text)))
    )


def _named(facts: CardFacts) -> list[str]:
    """The base model and datasets the record names (hub ids or paths)."""
    names = [facts.manifest.get("base_model"), facts.settings.get("source"), facts.settings.get("dataset")]
    names += [(p.get("dataset") or {}).get("source") for p in facts.pairs]
    return [str(n) for n in names if n]


def _datasets(facts: CardFacts) -> list[str]:
    return list(dict.fromkeys(n for n in _named(facts)[1:] if _hub_id(n, facts)))


def _metadata(facts: CardFacts, kind: str, adapter: bool) -> str:
    from huggingface_hub import ModelCardData

    base = facts.manifest.get("base_model")
    tags = ["storyreasoning", "visual-storytelling", "grounded-generation", "chain-of-thought", "qwen2.5-vl"]
    tags += [kind] if kind in ("sft", "dpo") else []
    tags += ["lora"] if facts.settings.get("mode") == "lora" or facts.manifest.get("merged_from") else []
    data = ModelCardData(
        license=facts.license or "other",
        base_model=base if _hub_id(base, facts) else None,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="image-text-to-text",
        datasets=_datasets(facts) or None,
        tags=tags,
    )
    if _hub_id(base, facts):
        data.base_model_relation = (
            "adapter" if adapter else ("merge" if facts.manifest.get("merged_from") else "finetune")
        )
    return data.to_yaml()


def _training_rows(facts: CardFacts, kind: str, adapter: bool) -> list[tuple[str, Any]]:
    s, m = facts.settings, facts.manifest
    rows: list[tuple[str, Any]] = [
        (
            "method",
            {"sft": "supervised fine-tuning", "dpo": "direct preference optimisation (DPO)"}.get(kind, kind),
        ),
        (
            "base model",
            f"`{m.get('base_model')}`" + (f" (revision {m['revision']})" if m.get("revision") else ""),
        ),
        ("mode", s.get("mode", m.get("mode"))),
    ]
    if s.get("mode", m.get("mode")) == "lora":
        rows.append(("LoRA", f"rank {s.get('rank')}, alpha {s.get('alpha')}, dropout {s.get('dropout')}, "
                             f"targets {', '.join(s.get('targets') or [])}"))  # fmt: skip
    if m.get("merged_from"):
        rows.append(("weights", f"adapter merged into the base, saved in {m.get('dtype', 'its dtype')}"))
    elif adapter:
        rows.append(("weights", "a LoRA adapter (loads its base model; needs peft)"))
    if m.get("steps") is not None:
        rows.append(("optimiser steps", m["steps"]))
    batch = s.get("batch_size"), s.get("grad_accum")
    if all(v is not None for v in batch):
        rows.append(("batch", f"{batch[0]} × {batch[1]} accumulated"
                              + (f" (global batch {s['global_batch']})" if s.get("global_batch") else "")))  # fmt: skip
    for key, label in (("epochs", "epochs"), ("max_steps", "max steps"), ("lr", "learning rate"),
                       ("warmup_ratio", "warm-up"), ("weight_decay", "weight decay"), ("beta", "β"),
                       ("loss_type", "DPO loss"), ("loss", "loss on"), ("max_length", "max length (tokens)"),
                       ("min_pixels", "min pixels"), ("max_pixels", "max pixels"), ("seed", "seed")):  # fmt: skip
        if s.get(key) is not None:
            rows.append((label, s[key]))
    return rows


def _data_lines(facts: CardFacts, kind: str) -> list[str]:
    s, fit = facts.settings, facts.fit
    lines = []
    if kind != "dpo" and s.get("source"):
        split = s.get("split")
        lines.append(f"- dataset `{s['source']}`, " + (f"split `{split}`" if split else "all splits")
                     + (f", the first {s['limit']} stories" if s.get("limit") else ""))  # fmt: skip
        if s.get("eval_split"):
            lines.append(f"- held-out split `{s['eval_split']}`")
    for p in facts.pairs:
        dataset = p.get("dataset") or {}
        where = f"`{dataset.get('source')}`" + (
            f" split `{dataset['split']}`" if dataset.get("split") else ""
        )
        runs = p.get("runs") or []
        count = p.get("pairs", (p.get("report") or {}).get("pairs"))
        lines.append(
            f"- pairs `{p['folder']}`: " + (f"{count} pairs, " if count is not None else "")
            + f"frames from {where if dataset else 'an unrecorded dataset'}"
            + (f", candidates from {len(runs)} runs" if runs else "")
        )  # fmt: skip
    if kind == "dpo" and s.get("dataset"):
        lines.append(f"- frames read from `{s['dataset']}`")
    if fit:
        parts = []
        for key, label in (("stories", "stories"), ("pairs", "pairs"), ("kept", "kept"), ("shortened", "shortened"),
                           ("frames_dropped", "frames dropped")):  # fmt: skip
            if isinstance(fit.get(key), int):
                parts.append(f"{fit[key]} {label}")
        too_long = fit.get("too_long")
        if too_long:
            parts.append(f"{len(too_long) if isinstance(too_long, list) else too_long} too long to fit")
        if parts:
            limit = fit.get("max_length", s.get("max_length"))
            how = "pairs too long are left out" if kind == "dpo" else "stories are shortened by whole frames"
            lines.append(f"- fitted to {limit or 'no'} tokens: " + ", ".join(parts) + f" ({how}, never cut)")
        for folder, counts in (fit.get("folders") or {}).items():  # DPO: what each pairs folder gave
            numbers = ", ".join(
                f"{k.replace('_', ' ')} {v}" for k, v in (counts or {}).items() if isinstance(v, int)
            )
            if numbers:
                lines.append(f"- from `{folder}`: {numbers}")
    for dataset in _datasets(facts):
        if dataset in DATASET_LICENSES:
            lines.append(f"- `{dataset}` is licensed {DATASET_LICENSES[dataset]}")
    return lines or ["- not recorded"]


def _evaluation_lines(evaluation: dict) -> list[str]:
    metrics = evaluation.get("metrics") or {}
    dataset = evaluation.get("dataset") or {}
    run = evaluation.get("run") or {}
    teller = run.get("teller") or {}
    lines = [
        f"Evaluated with `storyreasoning evaluate` (protocol `{evaluation.get('protocol', 'default')}`) on "
        f"`{dataset.get('source', '?')}`" + (f" split `{dataset['split']}`" if dataset.get("split") else "")
        + f", {evaluation.get('stories', '?')} stories"
        + (f"; sampling: {', '.join(f'{k} {v}' for k, v in teller.get('sampling', {}).items())}"
           if isinstance(teller.get("sampling"), dict) else "")
        + ".",
        "",
        "| metric | value |",
        "|---|---|",
    ]  # fmt: skip
    shown = 0
    for family, key, label in HEADLINE:
        value = ((metrics.get(family) or {}).get("overall") or {}).get(key)
        if value is not None:
            lines.append(f"| {label} | {_fmt(value)} |")
            shown += 1
    if not shown:
        lines.append("| (no headline number in the report) | – |")
    everything = [
        f"| {family}.{key} | {_fmt(value)} |"
        for family, scores in metrics.items()
        for key, value in ((scores or {}).get("overall") or {}).items()
    ]
    if everything:
        lines += ["", "<details><summary>Every number of the report</summary>", "", "| metric | value |", "|---|---|",
                  *everything, "", "</details>"]  # fmt: skip
    return lines


def model_card(facts: CardFacts) -> str:
    """The model card (``README.md``) for ``facts``: metadata, use, training, data, settings, numbers, license."""
    m, s = facts.manifest, facts.settings
    kind = m.get("kind", "model")
    adapter = bool(m.get("adapter"))
    name = facts.repo_id.split("/")[-1]
    base = m.get("base_model")
    lines = ["---", _metadata(facts, kind, adapter).rstrip("\n"), "---", "", f"# {name}", ""]
    lines += [
        "A grounded visual storyteller: from a sequence of images it writes a chain-of-thought scene analysis "
        "(characters, objects and settings of each frame, with boxes, and the narrative structure) inside "
        "`<think>…</think>`, then a story whose words are tied to image regions by `<gdi>`, `<gdo>`, `<gda>` and "
        "`<gdl>` tags, keeping the same id for the same character in every frame.",
        "",
        f"Trained from `{base}` with [storyreasoning]({PROJECT}) "
        + {"sft": "`train sft`", "dpo": "`train dpo` (contrastive preference training, as QwenStoryteller2)"}.get(
            kind, "`train`")
        + (", adapter merged with `train merge`" if m.get("merged_from") else "")
        + ".",
        "",
        "## Use",
        "",
        "```bash",
        f"storyreasoning tell frame1.jpg frame2.jpg frame3.jpg --model {facts.repo_id}",
        "```",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{facts.repo_id}", dtype="auto", device_map="auto")'
        + ("  # loads the base model too (pip install peft)" if adapter else ""),
        f'processor = AutoProcessor.from_pretrained("{facts.repo_id}")',
        "```",
        "",
        "Use the system prompt the model was trained with (`storyreasoning.format.prompts.SYSTEM_PROMPT`, the "
        "QwenStoryteller system prompt), "
        + ("the prompt first, then the frames" if s.get("order") == "text-first" else "the frames first, then a prompt")
        + ' such as "Generate a story based on these images."; '
        + ("boxes are pixels of the image as the model sees it (resized, `--box-space model`)."
           if s.get("box_space") == "model" else "boxes are pixels of the original images."),
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
    ]  # fmt: skip
    lines += [f"| {label} | {_fmt(value)} |" for label, value in _training_rows(facts, kind, adapter)]
    metrics = m.get("metrics") or {}
    if metrics:
        lines += ["", "Final metrics of the run:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in metrics.items()]
    lines += ["", "### Data", "", *_data_lines(facts, kind)]
    if s:
        lines += ["", "### Settings", "", "<details><summary>The resolved settings of the run</summary>", "",
                  "```json", json.dumps(s, indent=2, ensure_ascii=False), "```", "", "</details>"]  # fmt: skip
    versions = m.get("versions") or {}
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    if facts.checks:
        last = facts.checks[-1]
        lines += [
            "",
            "### Story checks during training",
            "",
            f"Every {s.get('eval_every', '?')} steps the model being trained told {s.get('eval_stories', '?')} "
            f"held-out stories (greedy, at most {s.get('eval_max_new_tokens', '?')} new tokens); the last check, "
            f"at step {last.get('step')} ({len(facts.checks)} in all):",
            "",
            "| check | value |",
            "|---|---|",
        ]  # fmt: skip
        lines += [f"| {label} | {_fmt(last.get(key))} |" for key, label in CHECKS if key in last]
    if facts.evaluation is not None:
        lines += ["", "## Evaluation", "", *_evaluation_lines(facts.evaluation)]
    lines += ["", "## License", ""]
    if facts.license:
        lines.append(f"`{facts.license}`" + (f", from {facts.license_source}" if facts.license_source else "")
                     + f". The model derives from `{base}`: its license and terms apply.")  # fmt: skip
    else:
        lines.append(f"Not recorded (`other` above): the model derives from `{base}`, whose license applies; "
                     "check it and set it with `train push --license`.")  # fmt: skip
    lines += ["", "## Citation", "", "```bibtex", CITATION_STORYREASONING]
    if kind == "dpo" or "QwenStoryteller2" in str(base):
        lines += ["", CITATION_QWENSTORYTELLER2]
    lines += ["```", "", MARKER, ""]
    return "\n".join(lines)


# -- pushing ---------------------------------------------------------------------------------------------


@dataclass
class PushPlan:
    """What a push sends: the folder, its card, the files (relative, card included) and where they go."""

    model: Path
    card: Path
    files: list[Path]
    repo_id: str
    private: bool
    revision: str | None


def write_card(source: Source, settings: PushSettings) -> Path:
    """The folder's ``README.md``: the ``--card`` given, or the generated card (never over a card of someone else's)."""
    target = source.model / CARD
    if settings.card is not None:
        if not settings.card.is_file():
            raise UsageError(f"--card {settings.card} is not a file; pass the README.md to upload")
        if settings.card.resolve() != target.resolve():
            write_text_atomic(target, settings.card.read_text(encoding="utf-8"))
        return target
    held = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else MARKER
    if MARKER not in held and TEMPLATE_LINE not in held:
        raise UsageError(
            f"{target} is a card train push did not write; upload it as it is with --card {target}, "
            "or move it away to get a generated one"
        )
    facts = gather(
        source, repo_id=settings.repo_id, eval_report=settings.eval_report, license=settings.license
    )
    write_text_atomic(target, model_card(facts))
    return target


def plan(settings: PushSettings) -> PushPlan:
    """Locate the model, write its card, and say what would go up."""
    if "/" not in settings.repo_id.strip("/"):
        raise UsageError(f"--repo-id {settings.repo_id!r} must be owner/name, e.g. you/storyteller")
    source = locate(settings.folder)
    card = write_card(source, settings)
    return PushPlan(source.model, card, upload_files(source.model), settings.repo_id, settings.private,
                    settings.revision)  # fmt: skip


def upload(push: PushPlan, *, token: str | None = None, commit_message: str | None = None) -> str:
    """Create the repository (and branch) when missing and upload the folder in one commit; the commit URL."""
    return upload_folder(
        push.model,
        push.repo_id,
        repo_type="model",
        private=push.private,
        revision=push.revision,
        token=token,
        message=commit_message or f"Upload {push.model.name} with storyreasoning train push",
        offline_fix=", or use --dry-run to see the card",
    )


def push(settings: PushSettings) -> int:
    """The ``train push`` command: write the card, then upload (or, with ``--dry-run``, list)."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    what = plan(settings)
    where = f"{what.repo_id}" + (f" (branch {what.revision})" if what.revision else "") + (
        ", private" if what.private else "")  # fmt: skip
    if settings.dry_run:
        err.print(f"[dim]dry run: the card is {what.card}; these files would go to {where}:[/dim]")
        for path in what.files:
            full = what.model / path
            print(
                f"{path.as_posix()}\t{full.stat().st_size if full.is_file() else 0}"
            )  # one file a line, tab, bytes
        return 0
    err.print(f"[dim]pushing {what.model} ({len(what.files)} files) to {where}[/dim]")
    url = upload(what, token=settings.token, commit_message=settings.commit_message)
    err.print(f"pushed {what.model} to {what.repo_id}: {url}")
    return 0


__all__ = [
    "CardFacts",
    "PushPlan",
    "PushSettings",
    "Source",
    "base_license",
    "gather",
    "locate",
    "model_card",
    "plan",
    "push",
    "upload",
    "upload_files",
    "write_card",
]

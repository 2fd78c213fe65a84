"""The settings of ``storyreasoning evaluate``: one declaration for its options, its config file and its record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..settings import argument, option

#: The most worker processes ``evaluate --workers`` starts (more only wait on each other and on memory).
MAX_WORKERS = 256
#: The most bootstrap resamples ``evaluate agree --resamples`` draws (more narrow nothing, and take memory).
MAX_RESAMPLES = 100_000


@dataclass(frozen=True, kw_only=True)
class EvaluateSettings:
    """Score a run against its dataset."""

    run: Path = argument(
        help="A tell-dataset run folder, or a folder of {story_id}.txt raw outputs (the original's layout).",
        metavar="RUN",
    )
    dataset: str | None = option(
        None, "--dataset", "-d", place=True,
        help="The reference dataset (hub id, save_to_disk folder, parquet, story folders); "
        "default: the one the run's manifest names.",
    )  # fmt: skip
    split: str | None = option(None, "--split", "-s", help="Split of the dataset (default: the run's split).")
    out: Path | None = option(None, "--out", "-o", help="Where the report goes (default: RUN/eval).")
    metrics: str = option(
        "all", help="Metric families, comma-separated: grounding, identity, consistency, language."
    )
    protocol: Literal["default", "original"] = option(
        "default",
        help="default: boxes match within their image, missing outputs score zero. "
        "original: the original driver's numbers, quirks included.",
    )
    language_backend: Literal["auto", "coco", "python"] = option(
        "auto",
        help="coco: pycocoevalcap with Java (PTB tokenizer, METEOR 1.5); python: pycocoevalcap's BLEU, ROUGE-L and "
        "CIDEr on our tokenizer, exact-match METEOR, no Java; auto: coco when Java is available.",
    )
    limit: int | None = option(None, min=1, help="Only the first N stories.")
    workers: int | None = option(
        None,
        min=1,
        max=MAX_WORKERS,
        help=f"Processes that parse and count the outputs, at most {MAX_WORKERS} (default: one per CPU above 200 "
        "stories, else 1: this process). The numbers do not depend on it.",
        operational=True,
    )
    plots: bool = option(True, help="Write PNG plots (needs matplotlib).")
    as_json: bool = option(False, "--json", help="Print metrics.json to standard output.")
    show_all: bool = option(
        False,
        "--all",
        help="Print every metric after the headline (they are always in metrics.md and metrics.json).",
        operational=True,
    )

    def families(self) -> tuple[str, ...]:
        from .report import parse_families

        return parse_families(self.metrics)


@dataclass(frozen=True, kw_only=True)
class CompareSettings:
    """Put evaluated runs side by side."""

    runs: tuple[Path, ...] = argument(
        help="Evaluated runs (run folders holding eval/, or report folders).", metavar="RUN"
    )
    out: Path | None = option(
        None, "--out", "-o", help="Write compare.md, compare.json and compare.png here."
    )
    metrics: str | None = option(
        None,
        help="Print these metrics or families after the headline, comma-separated (grounding, language.bleu_4, …).",
    )
    show_all: bool = option(False, "--all", help="Print every metric after the headline.")
    allow_mismatch: bool = option(
        False,
        help="Compare runs scored under different conventions (dataset, protocol, language backend, "
        "judge model or prompt) anyway; the rows they affect are marked.",
    )


JUDGE_SERVER = "Judge server"


@dataclass(frozen=True, kw_only=True)
class JudgeSettings:
    """Judge each story of a run with a multimodal model behind an OpenAI-compatible server.

    The server options are tell's EndpointOptions (same names, so ``tell.commands.endpoint_teller``
    builds the client) declared again with the judge's help: importing tell's settings would load
    the format package into ``evaluate --help``. Only the help and the judge's extra ``--model``
    differ (tests/evaluate/test_judge_settings.py holds the rest to tell's).
    """

    run: Path = argument(
        help="A tell-dataset run folder, or a folder of {story_id}.txt outputs.", metavar="RUN"
    )
    endpoint: str | None = option(
        None, "--endpoint", "-e", help="Base URL of the judge's OpenAI-compatible server (default: $OPENAI_BASE_URL).",
        panel=JUDGE_SERVER, operational=True, url=True,
    )  # fmt: skip
    served_model: str | None = option(
        None, "--model", "--served-model", help="The judge model on the server (default: the first it lists).",
        panel=JUDGE_SERVER,
    )  # fmt: skip
    api_key: str | None = option(
        None, help="API key for the server (default: $OPENAI_API_KEY); never recorded.", panel=JUDGE_SERVER,
        secret=True,
    )  # fmt: skip
    timeout: float = option(
        600.0, above=0.0, help="Seconds to wait for each read from the server.", panel=JUDGE_SERVER,
        operational=True,
    )  # fmt: skip
    deadline: float | None = option(
        None, min=0,
        help="Seconds one answer may take, retries included (default: one per --max-new-tokens token, at least "
        "600; 0: none).",
        panel=JUDGE_SERVER, show_default=False, operational=True,
    )  # fmt: skip
    retries: int = option(
        3, min=0, help="Retries of a request that failed before any answer (connection, 429, 5xx).",
        panel=JUDGE_SERVER, operational=True,
    )  # fmt: skip
    against: Path | None = option(
        None,
        help="Pairwise: another run of the same stories; the judge says which output is better, asked in both "
        "orders, and RUN's win rate is reported (pairwise.jsonl, pairwise_summary.json).",
    )
    dataset: str | None = option(
        None,
        "--dataset",
        "-d",
        help="The dataset the run was told from (default: the one its manifest names).",
        place=True,
    )
    split: str | None = option(None, "--split", "-s", help="Split of the dataset (default: the run's split).")
    out: Path | None = option(
        None,
        "--out",
        "-o",
        help="The folder the judgements go to, the judge's own, never a run folder (default: RUN/judge, or "
        "RUN/judge-vs-RUN_B); elsewhere, RUN/judge-location.json records where, so evaluate and compare find them.",
    )
    limit: int | None = option(None, min=1, help="Only the first N stories.")
    max_new_tokens: int = option(2048, min=1, help="Longest answer of the judge.")
    seed: int = option(0, help="Sampling seed sent to the server (the judge samples greedily).")
    json_schema: bool = option(
        True,
        help="Ask for the answer through response_format json_schema (dropped when the server refuses it); "
        "answers are validated either way.",
    )
    concurrency: int = option(8, min=1, help="Stories judged at once.", panel=JUDGE_SERVER, operational=True)
    price_input: float = option(
        0.0, min=0, help="Price per million prompt tokens, for the cost in the summary.", operational=True
    )
    price_output: float = option(
        0.0, min=0, help="Price per million completion tokens, for the cost in the summary.", operational=True
    )
    allow_mixed: bool = option(
        False,
        help="Add to an OUT judged by another model or prompt version (each result names its judge).",
        operational=True,
    )


@dataclass(frozen=True, kw_only=True)
class AgreeSettings:
    """How far two judges agree, or a judge and people's labels."""

    a: Path = argument(
        help="A judge's result (its folder, judgements.jsonl, or a run holding judge/) or a CSV/JSONL labels file.",
        metavar="A",
    )
    b: Path = argument(help="The other side: a judge's result or a labels file, as A.", metavar="B")
    metrics: str = option(
        "creativity,coherence,grounding_quality,hallucinations",
        help="Metrics to compare, comma-separated (hallucinations: the number per story).",
    )
    confidence: float = option(0.95, min=0.5, max=0.999, help="Level of the bootstrap intervals.")
    resamples: int = option(
        1000,
        min=0,
        max=MAX_RESAMPLES,
        help=f"Bootstrap resamples over the stories (0: no intervals; at most {MAX_RESAMPLES}).",
    )
    seed: int = option(0, help="Seed of the bootstrap.")
    out: Path | None = option(None, "--out", "-o", help="Also write the result as JSON to this file.")
    as_json: bool = option(False, "--json", help="Print the result as JSON instead of a table.")


__all__ = [
    "MAX_RESAMPLES",
    "MAX_WORKERS",
    "AgreeSettings",
    "CompareSettings",
    "EvaluateSettings",
    "JudgeSettings",
]

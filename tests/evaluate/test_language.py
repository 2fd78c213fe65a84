"""Language metrics: the original's cleaning, both backends, agreement with pycocoevalcap.

The Java tests share one module fixture: CoreNLP runs once and METEOR starts once (its
JVM and paraphrase tables take about 8 s), then every assertion reads the results.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib.util import find_spec
from pathlib import Path

import pytest

from storyreasoning.errors import StoryReasoningError, UsageError
from storyreasoning.evaluate import StoryPair
from storyreasoning.evaluate.language import (
    METRICS,
    TextScorer,
    close_java,
    corenlp_ptb_tokenize,
    language,
    meteor_exact,
    regex_ptb_tokenize,
    resolve_backend,
    score_texts,
    story_text,
)
from storyreasoning.evaluate.plots import Painter
from storyreasoning.evaluate.report import FAMILIES, evaluate_pairs
from storyreasoning.evaluate.scoring import Pool, score_jobs, summarize
from storyreasoning.format import parse_output

from .test_scoring import Steps, make_jobs

# The fixed example of reference/offline-stack.md §3, with pycocoevalcap's numbers there.
REFS = [
    ["a man is riding a bicycle down the street", "a person rides a bike on the road"],
    ["two dogs play in the grass", "a pair of dogs are playing on a lawn"],
]
HYPS = ["a man is riding a bicycle on the street", "two dogs are playing in the grass"]
FIXED = {
    "bleu_1": 1.0,
    "bleu_2": 0.9258,
    "bleu_3": 0.7539,
    "bleu_4": 0.5988,
    "rouge_l": 0.8345,
    "cider": 3.2831,
}

PROSE = [
    '"I can\'t believe it," Ines whispered, her voice barely audible over the storm.',
    "The old keeper -- a man of sixty -- turned the crank; the great lamp flickered... then roared!",
    "At 5:30 p.m., Dr. Ruiz arrived with the U.S. Navy's report: 3 boats lost, 12 saved (all alive).",
    "She didn't know what they'd done; he wouldn't say. It's their secret, isn't it?",
    "Wait—what? “Run,” he said. ‘Now!’ Its engine roared… and the car sped off.",
]

JAVA_REASON = "needs Java on PATH and pycocoevalcap (pip install 'storyreasoning[eval]'; apt-get install default-jre-headless)"
needs_java = pytest.mark.skipif(
    shutil.which("java") is None or find_spec("pycocoevalcap") is None, reason=JAVA_REASON
)
needs_pycocoevalcap = pytest.mark.skipif(
    find_spec("pycocoevalcap") is None, reason="needs pycocoevalcap: pip install 'storyreasoning[eval]'"
)


def output(segments: list[str]) -> str:
    story = "\n\n".join(f"<gdi image{n}>\n{s}\n</gdi>" for n, s in enumerate(segments, 1))
    return f"<think>\n## Image 1\n</think>\n{story}"


PAIRS_TEXT = [
    (
        "s1",
        output(
            ["<gdo char1>Ines</gdo> climbed the cliff path.", "<gdo char1>She</gdo> knocked on the door."]
        ),
        output(["<gdo char1>A woman</gdo> climbed the path.", "<gdo char1>She</gdo> knocked twice."]),
    ),
    (
        "s2",
        output(["<gdo char2>Tomas</gdo> opened the heavy door.", "The lamp was dead, he said."]),
        output(["<gdo char2>Tomas</gdo> opened the door.", "The lamp is dead, said <gdo char2>he</gdo>."]),
    ),
    ("s3", output(["The boat turned for home.", "The beam swept the sea."]), None),
]


def make_pairs() -> list[StoryPair]:
    return [StoryPair.from_texts(i, ref, cand, [(640, 480)] * 2) for i, ref, cand in PAIRS_TEXT]


# -- cleaning and tokenizing ---------------------------------------------------------------------


def test_story_text_is_the_originals_cleaning():
    telling = parse_output(
        "<think>\n## Image 1\n</think>\n<gdi image1>\n<gdo char1>Ines</gdo>   <gda char1>climbed</gda>\n"
        "toward <gdl lm1>the lighthouse</gdl>.\n</gdi>\n\n<gdi image2>\nShe knocked.\n</gdi>"
    )
    assert story_text(telling) == "Ines climbed toward the lighthouse. She knocked."
    assert story_text(None) == ""
    assert story_text(parse_output("<think>\n## Image 1\n| a | b |\n")) == ""  # cut off inside the CoT


def test_regex_tokenizer_follows_ptb():
    assert regex_ptb_tokenize("Don't stop, it's John's car!") == "do n't stop it 's john 's car"
    assert (
        regex_ptb_tokenize("He said (quietly): “Mr. Smith—no.”") == "he said -lrb- quietly -rrb- mr. smith no"
    )
    assert regex_ptb_tokenize("We can't; they won't... cannot") == "we ca n't they wo n't can not"
    assert regex_ptb_tokenize("3.14 and 10,000 dogs' bones?!") == "3.14 and 10,000 dogs bones ?!"
    assert regex_ptb_tokenize("") == ""


# -- the python backend: pycocoevalcap's scorers on our tokens (no Java needed) -----------------


def random_corpus(seed: int, n: int = 30):
    rng = random.Random(seed)
    vocab = "a the man dog ran sat on mat red big it he she walked to home".split()
    refs, hyps = [], []
    for _ in range(n):
        refs.append([" ".join(rng.choices(vocab, k=rng.randint(1, 25))) for _ in range(rng.randint(1, 3))])
        hyps.append(" ".join(rng.choices(vocab, k=rng.randint(0, 25))))
    return refs, hyps


def awkward_corpus(seed: int):
    """A random corpus with an empty candidate and an empty reference beside others."""
    refs, hyps = random_corpus(seed)
    if seed == 0:
        refs, hyps = REFS + refs, HYPS + hyps
    hyps[1] = ""
    refs[2] = ["", *refs[2][1:]]
    return refs, hyps


@needs_pycocoevalcap
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_python_backend_gives_pycocoevalcaps_numbers(seed):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs, hyps = awkward_corpus(seed)
    gts = dict(enumerate(refs))
    res = {i: [h] for i, h in enumerate(hyps)}
    ours = score_texts(refs, hyps, backend="python", tokenized=True)
    b_corpus, b_items = Bleu(4).compute_score(gts, res, verbose=0)
    r_mean, r_items = Rouge().compute_score(gts, res)
    c_mean, c_items = Cider().compute_score(gts, res)
    for k in range(4):
        assert ours.overall[f"bleu_{k + 1}"] == b_corpus[k]
        assert [item[f"bleu_{k + 1}"] for item in ours.per_item] == b_items[k]
    assert ours.overall["rouge_l"] == r_mean
    assert [item["rouge_l"] for item in ours.per_item] == list(r_items)
    # CIDEr's logarithms are math.log's, which may differ from NumPy's in the last bit
    assert ours.overall["cider"] == pytest.approx(c_mean, rel=1e-12)
    assert [item["cider"] for item in ours.per_item] == pytest.approx(list(c_items), rel=1e-12, abs=1e-12)


@needs_pycocoevalcap
def test_fixed_example_without_java():
    result = score_texts(REFS, HYPS, backend="python")
    for key, value in FIXED.items():
        assert result.overall[key] == pytest.approx(value, abs=5e-5), key
    assert result.overall["meteor"] is None
    assert 0 < result.overall["meteor_exact"] < 1
    assert result.signature.startswith("python|regex-ptb|meteor_exact|pycocoevalcap=1.2|storyreasoning=")


@needs_pycocoevalcap
def test_edge_cases_of_empty_texts():
    def scores(refs, hyps):
        return score_texts(refs, hyps, backend="python", tokenized=True).overall

    assert scores([[""]], [""])["rouge_l"] == 1.0  # pycocoevalcap: one empty token each
    assert scores([["a b"]], [""])["rouge_l"] == 0.0
    assert scores([[""]], ["a"])["cider"] is None  # no reference word: CIDEr undefined
    assert all(value is None for value in scores([], []).values())
    assert max(scores([["a b c d"]], [""])[f"bleu_{k}"] for k in range(1, 5)) < 1e-6
    assert meteor_exact([["a b c"]], [""]) == (0.0, [0.0])
    assert meteor_exact([["a b c"]], ["a b c"])[0] == pytest.approx(1.0)


@needs_pycocoevalcap
def test_python_backend_starts_no_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java to start: starting it would fail
    result = language(make_pairs(), backend="auto")
    assert result.extra["backend"] == "python" and 0 < result.overall["bleu_1"] <= 1
    assert result.overall["cider"] is not None and result.overall["meteor"] is None


def test_without_pycocoevalcap_the_language_metrics_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)  # as if it were not installed
    for backend in ("python", "auto", "coco"):
        with pytest.raises(UsageError, match=r"pip install 'storyreasoning\[eval\]'"):
            language(make_pairs(), backend=backend)


@needs_pycocoevalcap
def test_language_python_backend_and_missing_outputs():
    zero = language(make_pairs(), backend="python")
    assert zero.family == "language"
    assert (zero.overall["n_stories"], zero.overall["n_missing"], zero.overall["n_evaluated"]) == (3, 1, 3)
    assert zero.extra["missing"] == ["s3"]
    assert zero.per_story["s3"]["bleu_4"] < 1e-6 and zero.per_story["s3"]["rouge_l"] == 0.0
    assert zero.per_story["s3"]["cider"] == 0.0
    excl = language(make_pairs(), backend="python", missing="exclude")
    assert excl.overall["n_evaluated"] == 2
    assert all(excl.per_story["s3"][m] is None for m in METRICS)
    assert excl.overall["bleu_4"] > zero.overall["bleu_4"]  # the empty story no longer drags it down
    assert excl.extra["signature"] == zero.extra["signature"].replace("missing=zero", "missing=exclude")
    assert zero.extra["signature"].startswith(
        "python|regex-ptb|meteor_exact|missing=zero|pycocoevalcap=1.2|storyreasoning="
    )
    assert json.loads(json.dumps(zero.to_dict()))["extra"]["backend"] == "python"


@needs_pycocoevalcap
def test_nothing_to_score():
    result = language([], backend="python")
    assert result.overall["n_stories"] == 0
    assert all(result.overall[m] is None for m in METRICS)


@needs_pycocoevalcap
def test_backend_choice(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("java")
    with pytest.raises(ValueError, match="missing"):
        language([], backend="python", missing="drop")
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no java on it
    assert resolve_backend("auto") == "python"
    with pytest.raises(StoryReasoningError, match="Java"):
        resolve_backend("coco")


# -- the coco backend (Java) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco():
    if shutil.which("java") is None or find_spec("pycocoevalcap") is None:
        pytest.skip(JAVA_REASON)
    texts = ["Hello (world)!", "", "She said: “no.”", "", *PROSE, ""]
    try:
        # first, as storyreasoning evaluate does: Java started, then the stories parsed in workers
        # while it loads, the other families summarized while METEOR scores (one JVM for the module)
        # (the workers stay alive throughout: they must not hold CoreNLP's input open, or it waits for ever)
        scorer = TextScorer("coco")
        jobs = make_jobs(30)
        during: list[list[str]] = []
        concurrent: dict = {}
        steps = Steps()

        def score() -> None:
            java = scorer.pipes()
            with Pool(2, close_fds=java) as pool, Painter(process=True, close_fds=java) as painter:
                items = score_jobs(jobs, FAMILIES, pool=pool)
                concurrent.update(
                    summarize(
                        items,
                        FAMILIES,
                        text_scorer=scorer,
                        on_others=lambda done: painter.consistency(done, Path(tmp) / "plots"),
                        while_meteor=lambda done: during.append(list(done)),
                        progress=steps,
                    )
                )

        with tempfile.TemporaryDirectory() as tmp:
            thread = threading.Thread(target=score, daemon=True)
            thread.start()
            thread.join(timeout=300)
            scorer.close()
            assert not thread.is_alive(), "CoreNLP or METEOR never answered"
        yield {
            "concurrent": (concurrent, during),
            "steps": steps.steps,
            "sequential": evaluate_pairs([job.pair() for job in jobs], language_backend="coco"),
            "pycocoevalcap_tokens": pycocoevalcap_tokens(ASCII_PROSE),
            "tokens": (texts, corenlp_ptb_tokenize(texts)),
            "fixed": score_texts(REFS, HYPS, backend="coco"),
            "pairs": language(make_pairs(), backend="coco"),
            "pairs_python": language(make_pairs(), backend="python"),
            "same_tokens": [
                score_texts(*awkward_corpus(1), backend=b, tokenized=True) for b in ("coco", "python")
            ],
        }
    finally:
        close_java()


def pycocoevalcap_tokens(texts: list[str]) -> list[str]:
    """pycocoevalcap's own PTBTokenizer (it writes its temporary file beside its jar)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokens = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    return [tokens[i][0] for i in range(len(texts))]


# pycocoevalcap starts CoreNLP without -encoding: the same texts in ASCII
ASCII_PROSE = [
    text.translate(str.maketrans({"—": "--", "“": '"', "”": '"', "‘": "'", "’": "'", "…": "..."}))
    for text in PROSE
] + ["Hello (world)!", "Two  spaces and\na newline.", "It's 5 o'clock; they're late -- again."]


@needs_java
def test_java_started_first_gives_the_sequential_report(coco):
    concurrent, during = coco["concurrent"]
    assert during == [["grounding", "identity", "consistency"]]  # ready before METEOR finished
    assert {k: v.to_dict() for k, v in concurrent.items()} == {
        k: v.to_dict() for k, v in coco["sequential"].items()
    }
    assert 0 < concurrent["language"].overall["meteor"] < 1


@needs_java
def test_every_step_of_the_language_metrics_shows_its_progress(coco):
    """CoreNLP's tokens counted as it writes them, BLEU, ROUGE-L and CIDEr story by story, then the
    wait for METEOR (still loading its tables when the other families are done) as it scores."""
    assert coco["steps"] == [
        ("tokenizing (CoreNLP)", 60, 60),  # every reference and candidate
        ("BLEU, ROUGE-L, CIDEr", 30, 30),
        ("METEOR (Java)", 30, 30),
    ]


@needs_java
def test_a_tokenizer_that_takes_too_long_is_stopped(monkeypatch):
    from storyreasoning.evaluate import language

    monkeypatch.setattr(language, "TOKENIZE_TIMEOUT", 0.05)  # its JVM alone takes longer to start
    with pytest.raises(StoryReasoningError, match=r"PTBTokenizer took over .* use the python backend"):
        corenlp_ptb_tokenize(PROSE * 100)


@needs_java
def test_our_tokenizer_call_gives_pycocoevalcaps_tokens(coco):
    # we feed CoreNLP on its standard input, started ahead of the texts; pycocoevalcap writes a file
    assert corenlp_ptb_tokenize(ASCII_PROSE) == coco["pycocoevalcap_tokens"]


@needs_java
def test_coco_fixed_example_numbers(coco):
    fixed = coco["fixed"]
    for key, value in FIXED.items():
        assert fixed.overall[key] == pytest.approx(value, abs=5e-5), key
    assert fixed.overall["meteor"] == pytest.approx(0.5197, abs=5e-5)
    assert [item["meteor"] for item in fixed.per_item] == pytest.approx([0.4666, 0.8965], abs=5e-5)


@needs_java
def test_coco_signature(coco):
    version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    sig = coco["pairs"].extra["signature"]
    assert sig.startswith("coco|ptb-corenlp-3.4.1|meteor-1.5|missing=zero|pycocoevalcap=")
    java = sig.rsplit("java=", 1)[1]
    assert java != "unknown" and f'"{java}"' in version
    assert coco["pairs"].extra["tokenizer"] == "ptb-corenlp-3.4.1"


@needs_java
def test_corenlp_tokenizer_keeps_alignment_and_the_originals_quirks(coco):
    texts, tokens = coco["tokens"]
    assert len(tokens) == len(texts)
    assert tokens[:4] == ["hello -lrb- world -rrb-", "", "she said no", ""]  # -lrb- survives (lower case)
    assert tokens[-1] == ""


@needs_java
def test_regex_tokenizer_agrees_with_corenlp_on_prose(coco):
    texts, tokens = coco["tokens"]
    for text, expected in zip(texts, tokens, strict=True):
        assert regex_ptb_tokenize(text) == expected, text


@needs_java
def test_coco_handles_a_missing_output_and_agrees_with_python_here(coco):
    pairs, python = coco["pairs"], coco["pairs_python"]
    assert pairs.per_story["s3"]["meteor"] == 0.0  # an empty candidate neither hangs nor crashes METEOR
    assert 0 < pairs.overall["meteor"] < 1
    for key in ("bleu_1", "bleu_4", "rouge_l", "cider", "meteor_exact"):
        # these simple texts tokenize the same either way, so the numbers agree
        assert pairs.overall[key] == pytest.approx(python.overall[key], abs=1e-12), key


@needs_java
def test_both_backends_score_the_same_tokens_the_same(coco):
    coco_scores, python_scores = coco["same_tokens"]
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "meteor_exact"):
        assert coco_scores.overall[key] == python_scores.overall[key], key
        assert [i[key] for i in coco_scores.per_item] == [i[key] for i in python_scores.per_item], key
    assert 0 < coco_scores.overall["meteor"] < 1 and python_scores.overall["meteor"] is None


@needs_java
@pytest.mark.slow
def test_our_jvm_flags_change_no_meteor_score(coco):
    """pycocoevalcap's own Meteor wrapper (its command line: none of METEOR_JVM_FLAGS) scores
    the same tokens exactly as our METEOR processes do."""
    from pycocoevalcap.meteor.meteor import Meteor

    refs, hyps = awkward_corpus(1)
    hyps = [h.replace("  ", " ") for h in hyps]  # what the wrapper does to a hypothesis, ours too
    theirs = Meteor()
    try:
        score, items = theirs.compute_score(dict(enumerate(refs)), {i: [h] for i, h in enumerate(hyps)})
    finally:
        del theirs  # its __del__ stops its JVM
    ours = coco["same_tokens"][0]
    assert ours.overall["meteor"] == score
    assert [item["meteor"] for item in ours.per_item] == items


def _meteor_alignment_by_rescanning(ref: list[str], hyp: list[str]) -> tuple[int, int, int, int]:
    """The greedy exact alignment written plainly: each token's free positions listed again."""
    positions: dict[str, list[int]] = {}
    for j, tok in enumerate(ref):
        positions.setdefault(tok, []).append(j)
    used: set[int] = set()
    aligned = []
    prev = -2
    for i, tok in enumerate(hyp):
        free = [j for j in positions.get(tok, ()) if j not in used]
        if not free:
            prev = -2
            continue
        j = prev + 1 if prev + 1 in free else free[0]
        used.add(j)
        aligned.append((i, j))
        prev = j
    chunks = sum(
        1
        for k, (i, j) in enumerate(aligned)
        if k == 0 or (i, j) != (aligned[k - 1][0] + 1, aligned[k - 1][1] + 1)
    )
    return len(hyp), len(ref), len(aligned), chunks


def test_the_exact_meteor_alignment_is_the_plain_greedy_one():
    import random

    from storyreasoning.evaluate.language import _meteor_stats

    rng = random.Random(0)
    for _ in range(3000):
        vocab = "a b c d e the".split()[: rng.randint(1, 6)]  # few words: many repeats
        ref, hyp = rng.choices(vocab, k=rng.randint(0, 25)), rng.choices(vocab, k=rng.randint(0, 25))
        assert _meteor_stats(ref, hyp) == _meteor_alignment_by_rescanning(ref, hyp), (ref, hyp)

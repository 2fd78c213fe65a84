"""Our BLEU, ROUGE-L and CIDEr-D give pycocoevalcap's own numbers (its classes run beside them)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storyreasoning.evaluate.coco_scorers import coco_scores, lcs_length, ngram_counts
from storyreasoning.evaluate.language import regex_ptb_tokenize, score_texts, story_text
from storyreasoning.format import parse_output

pytest.importorskip("pycocoevalcap", reason="needs pycocoevalcap: pip install 'storyreasoning[eval]'")

LIGHTHOUSE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"


def pycocoevalcap(refs: list[list[str]], hyps: list[str]) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = dict(enumerate(refs)), {i: [h] for i, h in enumerate(hyps)}
    out = {
        "bleu": Bleu(4).compute_score(gts, res, verbose=0),
        "rouge_l": Rouge().compute_score(gts, res),
        "cider": (None, []),
    }
    if any(r.split() for rs in refs for r in rs):  # its Cider fails when no reference has a word
        out["cider"] = Cider().compute_score(gts, res)
    return out


def assert_same(refs: list[list[str]], hyps: list[str]) -> None:
    ours, theirs = coco_scores(refs, hyps), pycocoevalcap(refs, hyps)
    assert ours["bleu"][0] == theirs["bleu"][0]  # bit for bit: the same operations in the same order
    assert ours["bleu"][1] == theirs["bleu"][1]
    assert ours["rouge_l"][0] == theirs["rouge_l"][0]
    assert ours["rouge_l"][1] == list(theirs["rouge_l"][1])
    if theirs["cider"][0] is None:
        assert ours["cider"] == (None, [])
    else:  # math.log may differ from NumPy's in the last bit
        assert ours["cider"][0] == pytest.approx(float(theirs["cider"][0]), rel=1e-12, abs=1e-12)
        assert ours["cider"][1] == pytest.approx([float(x) for x in theirs["cider"][1]], rel=1e-12, abs=1e-12)


def random_corpus(seed: int, n: int = 40):
    rng = random.Random(seed)
    vocab = "a the man dog ran sat on mat red big it he she walked to home lamp sea".split()
    refs, hyps = [], []
    for _ in range(n):
        refs.append([" ".join(rng.choices(vocab, k=rng.randint(0, 30))) for _ in range(rng.randint(1, 4))])
        hyps.append(" ".join(rng.choices(vocab, k=rng.randint(0, 30))))
    return refs, hyps


@pytest.mark.parametrize("seed", range(6))
def test_random_corpora_with_several_references_and_empty_texts(seed):
    assert_same(*random_corpus(seed))


def test_story_length_texts():
    """The texts evaluate scores: stories of about 70 tokens, candidates with a sentence dropped."""
    story = story_text(parse_output(LIGHTHOUSE.read_text(encoding="utf-8")))
    rng = random.Random(7)
    sentences = story.split(". ")
    refs, hyps = [], []
    for _ in range(30):
        kept = [s for s in sentences if rng.random() > 0.2] or sentences[:1]
        refs.append([regex_ptb_tokenize(story)])
        hyps.append(regex_ptb_tokenize(". ".join(kept)))
    assert_same(refs, hyps)


def test_corner_cases():
    assert_same([[""]], [""])  # one empty token each (ROUGE-L 1); no reference word: no CIDEr
    assert_same([["a b c"]], [""])
    assert_same([[""], ["a"]], ["a", ""])
    assert_same([["a  b"]], ["a b"])  # ROUGE-L splits on single spaces, BLEU and CIDEr on whitespace
    assert_same([["x y z"], ["x y z"]], ["x y z", "z y x"])  # every n-gram in every reference: idf 0


def test_lcs_length_is_the_dynamic_programmes():
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = random.Random(3)
    for _ in range(2000):
        a = rng.choices("abcde", k=rng.randint(0, 40))
        b = rng.choices("abcdef", k=rng.randint(0, 40))
        assert lcs_length(a, b) == my_lcs(a, b), (a, b)
    long = rng.choices("abcdefghij", k=300)  # wider than a machine word
    assert lcs_length(long, long[::-1]) == my_lcs(long, long[::-1])


def test_ngrams_are_pycocoevalcaps():
    from pycocoevalcap.bleu.bleu_scorer import precook

    text = "the man saw the man saw the dog"
    _, theirs = precook(text, 4)
    ours = ngram_counts(text)
    assert {tuple(g.split(" ")): c for counts in ours for g, c in counts.items()} == dict(theirs)


def test_both_scorers_of_score_texts_agree():
    refs, hyps = random_corpus(11)
    ours = score_texts(refs, hyps, backend="python", tokenized=True)
    theirs = score_texts(refs, hyps, backend="python", tokenized=True, scorers="pycocoevalcap")
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert ours.overall[key] == theirs.overall[key]
    assert ours.overall["cider"] == pytest.approx(theirs.overall["cider"], rel=1e-12)
    with pytest.raises(ValueError, match="scorers"):
        score_texts(refs, hyps, backend="python", scorers="nltk")


@pytest.mark.parametrize("seed", range(4))
def test_each_items_stats_computed_apart_give_the_same_numbers(seed):
    """What a scoring worker computes per story (item_stats, meteor_exact_item) makes exactly the
    corpus numbers computed at once, with several references and empty texts."""
    from storyreasoning.evaluate.coco_scorers import item_stats
    from storyreasoning.evaluate.language import TextScorer, item_parts, meteor_exact, meteor_exact_item

    refs, hyps = random_corpus(seed)
    stats = [item_stats(rs, h) for rs, h in zip(refs, hyps, strict=True)]
    assert coco_scores(refs, hyps, stats) == coco_scores(refs, hyps)
    items = [meteor_exact_item(rs, h) for rs, h in zip(refs, hyps, strict=True)]
    assert meteor_exact(refs, hyps, items) == meteor_exact(refs, hyps)
    single = [[rs[0]] for rs in refs]  # what a story has: one reference
    parts = [item_parts(rs[0], h) for rs, h in zip(single, hyps, strict=True)]
    scorer = TextScorer("python")
    apart = scorer.score(single, hyps, tokenized=True, items=parts)
    at_once = scorer.score(single, hyps, tokenized=True)
    assert (apart.overall, apart.per_item) == (at_once.overall, at_once.per_item)
    with pytest.raises(ValueError, match="one per hypothesis"):
        scorer.score(single, hyps, tokenized=True, items=parts[1:])


@pytest.mark.parametrize("n", [1, 7, 2500])
def test_the_items_are_counted_as_they_are_scored(n):
    refs, hyps = random_corpus(3, n)
    counted: list[int] = []
    ours = coco_scores(refs, hyps, advance=counted.append)
    step = max(1, n // 1000)  # at most about 2,000 calls: a call per item costs more than a bar shows
    assert sum(counted) == n and len(counted) == -(-n // step)
    assert ours == coco_scores(refs, hyps)

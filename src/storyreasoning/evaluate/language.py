"""Language metrics: BLEU-1…4, METEOR, ROUGE-L and CIDEr of the story text.

Both texts of a pair go through the original's cleaning (reference §4.1): the story part
of the output (after ``</think>``), every ``<…>`` tag removed, whitespace collapsed to
single spaces, stripped (:func:`story_text`). Then one of two backends scores them:

``"coco"`` — what the original and the paper used (pycocoevalcap 1.2, needs Java):
    the Stanford CoreNLP 3.4.1 PTBTokenizer (lower-cased, one line per text, the
    punctuation tokens ``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;``
    removed) and the Meteor 1.5 jar, both pycocoevalcap's, started with the same
    command lines as its wrappers, plus JVM flags that change no number and shorten
    their start (:data:`SHORT_RUN_JVM_FLAGS`, :data:`METEOR_JVM_FLAGS`). The tokenizer runs
    **once** for all texts of a call; METEOR processes are started once per Python process
    and reused by later calls (:func:`close_java` stops them), so a run pays the JVM and
    paraphrase-table start (6 s or more) once. A :class:`TextScorer` starts both JVMs when it is made, so they
    load while the caller reads and parses (``storyreasoning evaluate`` makes it first),
    and METEOR scores while BLEU, ROUGE-L and CIDEr are computed. We drive the jars
    ourselves because pycocoevalcap's tokenizer wrapper writes a temporary file into
    site-packages (which fails on a read-only install) and its METEOR wrapper neither
    pipelines nor reports a dead JVM.

``"python"`` — no Java: a regex PTB-like tokenizer (:func:`regex_ptb_tokenize`: lower
    case, contractions split as PTB does, the same punctuation tokens removed). METEOR
    1.5 needs its jar and paraphrase tables, so this backend reports ``meteor=None``.

In both backends BLEU, ROUGE-L and CIDEr are pycocoevalcap's numbers on the backend's
tokens: by default computed by :mod:`.coco_scorers` (the same formulas, bit for bit the
same BLEU and ROUGE-L and CIDEr to 1e-12, tested against pycocoevalcap's classes; about
0.2 s for 626 story-length texts where pycocoevalcap's classes take about 5 s, most of it
its O(n·m) ROUGE-L table and CIDEr's per-n-gram NumPy calls), or by its own classes
(``Bleu(4)``, ``Rouge()``, ``Cider()``) with ``scorers="pycocoevalcap"``. They start no
Java (only its tokenizer and METEOR do). Both backends need pycocoevalcap (``pip install
'storyreasoning[eval]'``), and on the same tokens they give the same numbers.

``meteor_exact`` (both backends) is an approximation, not METEOR 1.5: exact token
matches only (no stems, synonyms or paraphrases, no function-word weights), a greedy
alignment, and METEOR 1.5's scoring (α=0.85, β=0.2, γ=0.6, fragmentation penalty,
corpus score from summed statistics). Do not compare it with published METEOR.

``"auto"`` picks ``"coco"`` when ``java`` is on PATH, else ``"python"``.

Every result carries ``extra["signature"]``, for example
``coco|ptb-corenlp-3.4.1|meteor-1.5|missing=zero|pycocoevalcap=1.2|java=17.0.15`` or
``python|regex-ptb|meteor_exact|missing=zero|pycocoevalcap=1.2|storyreasoning=0.1.0``: the
backend, the tokenizer, the METEOR implementation, the missing-output policy and the
versions.

Definitions, as pycocoevalcap computes them: BLEU is corpus-level (clipped n-gram
counts and lengths summed over stories; the brevity penalty uses, per story, the
reference length closest to the candidate's), not a mean of sentence scores; METEOR is
Meteor's aggregate (from summed statistics); ROUGE-L is the mean over stories of the
LCS F-score with β = 1.2; CIDEr(-D) uses n = 1…4, σ = 6, ×10, clipping, and an IDF
computed from the evaluated references, so it depends on the set of stories (with one
story every weight is 0). Per-story values (``per_story``) are pycocoevalcap's per-image
values. Empty texts: pycocoevalcap splits an empty text into one empty token, so an
empty candidate scores 0 everywhere except ROUGE-L against an empty reference (1.0);
Meteor 1.5 scores empty texts 0 (checked: it neither hangs nor fails on them).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple

from ..errors import StoryReasoningError, UsageError
from ..format.story import clean_text
from ..format.stream import Telling
from ..terminal import no_progress
from .coco_scorers import ItemStats, item_stats
from .pairs import Scores, StoryPair

BACKENDS = ("auto", "coco", "python")
MISSING_POLICIES = ("zero", "exclude")
NO_PYCOCOEVALCAP = (
    "the language metrics need pycocoevalcap (its BLEU, ROUGE-L and CIDEr run without Java): "
    "pip install 'storyreasoning[eval]'"
)
METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "meteor_exact")

Progress = Callable[[int | None, str], AbstractContextManager[Callable[[int], None]]]
"""How a long step shows its progress: ``progress(total, label)`` is a context whose value is
``advance(n)`` (:func:`storyreasoning.terminal.progress_bar`; ``storyreasoning evaluate`` passes it)."""


# pycocoevalcap's PUNCTUATIONS, verbatim. CoreNLP is run with -lowerCase, so it writes
# "-lrb-" and the upper-case bracket entries never match: parentheses survive as tokens.
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# METEOR 1.5, task "rank" (its default), English: alpha, beta, gamma (delta only weighs
# function words, which meteor_exact does not distinguish).
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA = 0.85, 0.20, 0.60


def story_text(telling: Telling | None) -> str:
    """The text the language metrics score: the story, tags removed, whitespace collapsed.

    The story is what follows ``</think>`` (:attr:`Telling.story_text`); an output with
    no story, or no output, gives ``""``.
    """
    if telling is None or not telling.story_text:
        return ""
    return clean_text(telling.story_text)


# -- the pure-Python tokenizer ------------------------------------------------------------------

_ABBREVIATIONS = (
    "mr|mrs|ms|dr|st|jr|sr|prof|mt|ft|gen|col|lt|sgt|capt|rev|gov|sen|rep|hon|etc|vs|inc|corp|ltd|co|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'",  # ‘
        "\u2019": "'",  # ’
        "\u201a": "'",  # ‚
        "\u02bc": "'",  # ʼ
        "\u2032": "'",  # ′
        "\u201c": '"',  # “
        "\u201d": '"',  # ”
        "\u201e": '"',  # „
        "\u00ab": '"',  # «
        "\u00bb": '"',  # »
        "\u2014": " -- ",  # —
        "\u2013": " -- ",  # –
        "\u2015": " -- ",  # ―
        "\u2010": "-",  # ‐
        "\u2011": "-",  # ‑
        "\u2026": " ... ",  # …
        "\u20ac": "$",  # € (CoreNLP normalises currency signs)
        "\u00a3": "#",  # £
    }
)
_TOKEN = re.compile(
    r"""
    (?:[^\W\d_]\.){2,}                           # acronyms: u.s. a.m. e.g.
  | (?:"""
    + _ABBREVIATIONS
    + r"""|[^\W\d_])\.(?!\w)                     # abbreviations and initials keep their period
  | (?:no|nos|fig|figs|vol|pp)\.(?=\s*\d)         # No. 5, Fig. 3
  | \d+(?:[.,:/]\d+)+                            # 10,000  3.14  3:30  3/4
  | [^\W_]+(?:['/-][^\W_]+)*                     # words, with inner hyphens, slashes, apostrophes
  | '(?:s|m|d|re|ve|ll)(?![^\W_])                # a clitic left alone by a quote: dogs 's
  | \.{2,} | [?!]+ | -{2,} | ``|''               # punctuation runs
  | \S                                           # any other symbol, alone
    """,
    re.VERBOSE,
)
_CLITIC = re.compile(r"^(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$")
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "lemme": ("lem", "me"),
    "gimme": ("gim", "me"),
}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SPACE = re.compile(r"\s+")


def _split_word(word: str) -> list[str]:
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    tail: list[str] = []
    while True:
        m = _CLITIC.match(word)
        if m is None:
            break
        word = m.group(1)
        tail.insert(0, m.group(2))
    return [word, *tail]


def regex_ptb_tokenize(text: str) -> str:
    """A PTB-like tokenization without Java, in pycocoevalcap's output form.

    Lower-cases, splits punctuation and the clitics PTB splits (``don't`` → ``do n't``,
    ``it's`` → ``it 's``), keeps abbreviations (``mr.``, ``u.s.``), maps brackets to
    ``-lrb-``/``-rrb-``…, drops :data:`PTB_PUNCTUATION` and joins the tokens with single
    spaces. It agrees with CoreNLP on ordinary prose, not on every corner case.
    """
    text = unicodedata.normalize("NFC", text).replace("&amp;", "&").translate(_CHAR_MAP).lower()
    tokens: list[str] = []
    append = tokens.append
    for tok in _TOKEN.findall(text):  # the whole matches (the pattern has no groups): no match objects
        first = tok[0]
        if first.isalpha() or first.isdigit():  # a word, or a word and its clitics: never punctuation
            if "'" in tok or tok in _SPLIT_WORDS:
                tokens.extend(_split_word(tok))
            else:
                append(tok)
        elif tok != '"' and tok not in PTB_PUNCTUATION:
            append(_BRACKETS.get(tok, tok))  # -lrb- and the like stay: pycocoevalcap lists them upper-case
    return " ".join(tokens)


# -- meteor_exact: METEOR 1.5's scoring on exact matches only (no Java) ----------------------------


def _meteor_stats(ref: list[str], hyp: list[str]) -> tuple[int, int, int, int]:
    """``(hyp_len, ref_len, matches, chunks)`` of a greedy exact-match alignment."""
    free_at: dict[str, list[int]] = {}  # each token's reference positions not yet aligned, in order
    for j, tok in enumerate(ref):
        free_at.setdefault(tok, []).append(j)
    used: set[int] = set()
    n_ref = len(ref)
    matches = chunks = 0
    prev = -2  # the reference position of the last match when it aligned the previous token, else -2
    for tok in hyp:
        free = free_at.get(tok)
        if not free:
            prev = -2
            continue
        # the position after the last match when it is this token's and free, else its first free one
        j = prev + 1
        if j > 0 and j < n_ref and ref[j] == tok and j not in used:
            free.remove(j)  # the match goes on: the same chunk
        else:  # a new chunk: had j been prev + 1, the match would have gone on
            j = free.pop(0)
            chunks += 1
        used.add(j)
        matches += 1
        prev = j
    return len(hyp), n_ref, matches, chunks


def _meteor_from_stats(hyp_len: float, ref_len: float, matches: float, chunks: float) -> float:
    if matches == 0 or hyp_len == 0 or ref_len == 0:
        return 0.0
    p, r = matches / hyp_len, matches / ref_len
    fmean = 1.0 / ((1 - METEOR_ALPHA) / p + METEOR_ALPHA / r)
    if matches == hyp_len and matches == ref_len and chunks == 1:
        frag = 0.0
    else:
        frag = chunks / matches
    return max(0.0, fmean * (1 - METEOR_GAMMA * frag**METEOR_BETA))


def meteor_exact_item(refs: Sequence[str], hyp: str) -> tuple[float, tuple[int, int, int, int]]:
    """One candidate's exact-match METEOR against its best reference, and that alignment's
    ``(hyp_len, ref_len, matches, chunks)`` (which :func:`meteor_exact` sums over the corpus)."""
    h = hyp.split()
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for ref in refs:
        stats = _meteor_stats(ref.split(), h)
        score = _meteor_from_stats(*stats)
        if best is None or score > best[0]:
            best = (score, stats)
    if best is None:
        raise ValueError("every hypothesis needs at least one reference")
    return best


def meteor_exact(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str],
    items: Sequence[tuple[float, tuple[int, int, int, int]]] | None = None,
) -> tuple[float | None, list[float]]:
    """An exact-match-only METEOR (see the module docstring); not METEOR 1.5. ``items``: each
    candidate's :func:`meteor_exact_item`, computed earlier (in worker processes)."""
    if items is None:
        items = [meteor_exact_item(refs, hyp) for refs, hyp in zip(references, hypotheses, strict=True)]
    scores: list[float] = []
    totals = [0, 0, 0, 0]
    for score, stats in items:
        scores.append(score)
        totals = [t + s for t, s in zip(totals, stats, strict=True)]
    if not scores:
        return None, []
    return _meteor_from_stats(*totals), scores


# -- Java: CoreNLP's PTBTokenizer and METEOR 1.5 -------------------------------------------------


def _coco_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(NO_PYCOCOEVALCAP)
    return Path(next(iter(spec.submodule_search_locations)))


def java_available() -> bool:
    """True when a ``java`` executable is on PATH."""
    return shutil.which("java") is not None


def coco_available() -> bool:
    """True when the ``"coco"`` backend can run: Java on PATH and pycocoevalcap installed."""
    import importlib.util

    return java_available() and importlib.util.find_spec("pycocoevalcap") is not None


def resolve_backend(backend: str) -> str:
    """``"coco"`` or ``"python"`` for a requested backend (``"auto"`` decides by :func:`coco_available`).

    Both need pycocoevalcap (its BLEU, ROUGE-L and CIDEr); without it, a :class:`UsageError`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown language backend {backend!r}; use one of {', '.join(BACKENDS)}")
    import importlib.util

    if importlib.util.find_spec("pycocoevalcap") is None:
        raise UsageError(NO_PYCOCOEVALCAP)
    if backend == "auto":
        return "coco" if coco_available() else "python"
    if backend == "coco" and not java_available():
        raise StoryReasoningError(
            "the coco language backend needs Java, and no java is on PATH; install a JRE "
            "(for example apt-get install default-jre-headless) or use the python backend (--language-backend python)"
        )
    return backend


_JAVA_FLAGS = ["-Dfile.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8"]

SHORT_RUN_JVM_FLAGS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
"""JVM flags of CoreNLP's tokenizer, which lives a second or two: compiled by C1 alone and one
garbage collector thread, so that it spends no CPU on C2's background compiles or GC threads
that so short a run does not repay. Measured on a shared 2-core VM: tokenizing 1,252 story
texts takes 0.34-0.36 CPU-s instead of 0.53-0.67. No token changes (tested against
pycocoevalcap's own wrapper). ``bench/evaluate.py --plain-jvm`` measures without them."""

METEOR_JVM_FLAGS: tuple[str, ...] = ("-XX:+UseSerialGC", "-Xms1g", "-XX:MaxTenuringThreshold=0")
"""JVM flags of METEOR, whose start is mostly reading its paraphrase table (62 MB gzipped)
into about 330 MB of objects that live to the end: one garbage collector thread; a 1 GB heap
from the start (pycocoevalcap allows 2 GB), so the table grows without a young collection
every 130 MB (14 rather than 33); and what survives a young collection moved to the old
generation at once, since all of it is the table (copied once, not again between survivor
spaces). C2 stays on: its compiled read loop is what the start-up spends most of its time in.
Measured on the 2-core VM, METEOR started and scoring 626 stories, three interleaved runs each
(quiet machine): 7.35-8.50 s against 9.88-12.23 s with the C1-only flags the tokenizer uses, at
about the same CPU (9.4-11.5 s against 10.1-12.4). No score changes (tested against
pycocoevalcap's own wrapper)."""


class CoreNLPTokenizer:
    """CoreNLP's PTBTokenizer in a JVM of its own, started at once and fed on its standard input.

    Same jar and flags as pycocoevalcap's ``PTBTokenizer`` (``-preserveLines
    -lowerCase``), one text per line, the same punctuation tokens removed. Making one
    starts Java; :meth:`tokenize` (once) sends every text and reads the tokens, so the
    JVM loads while the caller does other work. Reading standard input instead of
    pycocoevalcap's temporary file changes nothing in the tokens (tested).
    """

    def __init__(self) -> None:
        jar = _coco_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
        cmd = [
            "java",
            *_JAVA_FLAGS,
            *SHORT_RUN_JVM_FLAGS,
            "-cp",
            str(jar),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-encoding",
            "utf-8",
            "-preserveLines",
            "-lowerCase",
        ]
        try:
            self._proc: subprocess.Popen | None = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise StoryReasoningError(
                "java is not on PATH; install a JRE or use the python backend (--language-backend python)"
            ) from exc

    def tokenize(self, texts: Sequence[str], advance: Callable[[int], None] | None = None) -> list[str]:
        """Every text's tokens (joined by single spaces); whitespace inside a text is collapsed first.

        The texts are written while the tokens are read, a line per text as CoreNLP writes them,
        so ``advance(n)`` can count the texts tokenized."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("a CoreNLPTokenizer tokenizes once")
        self._proc = None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        lines = [_SPACE.sub(" ", t).strip() for t in texts]
        stdin, stderr_pipe = proc.stdin, proc.stderr
        errors: list[bytes] = []
        late = threading.Event()

        def write() -> None:
            try:
                stdin.write("".join(line + "\n" for line in lines).encode("utf-8"))
            except OSError:  # it stopped; its status and standard error say why
                pass
            finally:
                try:
                    stdin.close()  # the end of the texts
                except OSError:
                    pass

        def too_long() -> None:
            late.set()
            proc.kill()

        helpers = [
            threading.Thread(target=write, daemon=True),
            threading.Thread(target=lambda: errors.append(stderr_pipe.read()), daemon=True),  # never full
        ]
        timer = threading.Timer(TOKENIZE_TIMEOUT, too_long)
        timer.daemon = True
        for thread in (*helpers, timer):
            thread.start()
        out: list[str] = []
        try:
            counted = 0
            for raw in proc.stdout:
                out.append(raw.decode("utf-8").removesuffix("\n"))
                if advance is not None and len(out) - counted >= 256:
                    advance(len(out) - counted)
                    counted = len(out)
            if advance is not None and len(out) > counted:
                advance(len(out) - counted)
        except BaseException:  # interrupted: it is not waited for
            proc.kill()
            raise
        finally:
            timer.cancel()
            proc.wait()
            for thread in helpers:
                thread.join()
            proc.stdout.close()
            stderr_pipe.close()
        if late.is_set():
            raise StoryReasoningError(
                f"CoreNLP's PTBTokenizer took over {TOKENIZE_TIMEOUT:g} s; use the python backend "
                "(--language-backend python)"
            )
        if proc.returncode != 0:
            tail = b"".join(errors).decode("utf-8", "replace").strip().splitlines()[-3:]
            raise StoryReasoningError(
                f"CoreNLP's PTBTokenizer failed ({' / '.join(tail)}); use the python backend (--language-backend python)"
            )
        if len(out) > len(lines):
            raise StoryReasoningError(
                f"CoreNLP's PTBTokenizer returned {len(out)} lines for {len(lines)} texts; use the python backend (--language-backend python)"
            )
        out += [""] * (len(lines) - len(out))  # trailing empty texts give no line
        return [" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION) for line in out]

    def close(self) -> None:
        """Stop the JVM if :meth:`tokenize` never ran."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()


TOKENIZE_TIMEOUT = 600.0
"""Seconds CoreNLP's tokenizer may take for the texts of one call."""


def corenlp_ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenize every text with CoreNLP's PTBTokenizer in **one** Java call, as pycocoevalcap does.

    See :class:`CoreNLPTokenizer` (which starts that call ahead of the texts).
    """
    if not texts:
        return []
    return CoreNLPTokenizer().tokenize(texts)


class MeteorProcess:
    """One METEOR 1.5 process: pycocoevalcap's jar, command line and ``SCORE``/``EVAL`` protocol."""

    def __init__(self) -> None:
        directory = _coco_dir() / "meteor"
        self._stderr = tempfile.TemporaryFile()
        cmd = [
            "java",
            *_JAVA_FLAGS,
            *METEOR_JVM_FLAGS,
            "-jar",
            "-Xmx2G",
            "meteor-1.5.jar",
            "-",
            "-",
            "-stdio",
            "-l",
            "en",
            "-norm",
        ]
        try:
            self._proc = subprocess.Popen(
                cmd, cwd=directory, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
            )
        except FileNotFoundError as exc:
            self._stderr.close()
            raise StoryReasoningError(
                "java is not on PATH; install a JRE or use the python backend (--language-backend python)"
            ) from exc

    def alive(self) -> bool:
        return self._proc.poll() is None

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._stderr.seek(0)
            tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise StoryReasoningError(
                f"METEOR (Java) stopped unexpectedly ({' / '.join(tail) or 'no message'}); "
                "check that 2 GB of memory are free, or use the python backend (--language-backend python)"
            )
        return line.decode("utf-8").strip()

    def _pipeline(
        self, lines: list[str], replies: int, replied: Callable[[], None] | None = None
    ) -> list[str]:
        """Send ``lines`` while reading the ``replies`` lines they produce (no deadlock, no round trips);
        ``replied()`` after each."""
        stdin = self._proc.stdin
        assert stdin is not None

        def write() -> None:
            try:
                for line in lines:
                    stdin.write((line + "\n").encode("utf-8"))
                stdin.flush()
            except OSError:  # the process died; the reader reports it
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            if replied is None:
                return [self._readline() for _ in range(replies)]
            out = []
            for _ in range(replies):
                out.append(self._readline())
                replied()
            return out
        finally:
            writer.join()

    def stats(
        self,
        references: Sequence[Sequence[str]],
        hypotheses: Sequence[str],
        replied: Callable[[], None] | None = None,
    ) -> list[str]:
        """METEOR's sufficient statistics of each item (its ``SCORE`` command); ``replied()`` after each."""
        lines = [
            " ||| ".join(("SCORE", " ||| ".join(_meteor_clean(r) for r in refs), _meteor_clean(hyp)))
            for refs, hyp in zip(references, hypotheses, strict=True)
        ]
        return self._pipeline(lines, len(lines), replied)

    def evaluate(self, stats: list[str]) -> tuple[float, list[float]]:
        """The aggregate score and the per-item scores of statistics (its ``EVAL`` command)."""
        out = self._pipeline(["EVAL ||| " + " ||| ".join(stats)], len(stats) + 1)
        return float(out[-1]), [float(x) for x in out[:-1]]

    def close(self) -> None:
        """Stop the JVM at once (METEOR keeps nothing to save; one still loading its tables would
        only notice its closed input once loaded)."""
        if self._proc.poll() is None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            except OSError:
                pass
            self._proc.kill()
            self._proc.wait()
        self._stderr.close()


def _meteor_clean(text: str) -> str:
    """What pycocoevalcap does to a hypothesis (drop ``|||``), for every text, on one line."""
    return _SPACE.sub(" ", text.replace("|||", "")).strip()


def default_meteor_workers() -> int:
    """METEOR processes to run side by side: one per 4 CPUs, 1 to 4 (each holds about 1 GB)."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


class MeteorPool:
    """METEOR processes shared by every call in this Python process.

    A run starts them once (the JVM and the paraphrase tables take seconds) and reuses
    them; :func:`close_java` stops them. Items are split into contiguous shards, one per
    process, scored side by side, and the statistics evaluated together by the first
    process, so the result does not depend on the number of processes.
    """

    def __init__(self) -> None:
        self._procs: list[MeteorProcess] = []
        self._lock = threading.Lock()
        self._registered = False

    def start(self, workers: int) -> None:
        """Make sure ``workers`` live processes exist (starting them returns at once)."""
        with self._lock:
            if not self._registered:
                atexit.register(self.close)
                self._registered = True
            live = [p for p in self._procs if p.alive()]
            for p in self._procs:
                if p not in live:
                    p.close()
            while len(live) < workers:
                live.append(MeteorProcess())
            self._procs = live

    def score(
        self,
        references: Sequence[Sequence[str]],
        hypotheses: Sequence[str],
        workers: int = 1,
        replied: Callable[[], None] | None = None,
    ) -> tuple[float, list[float]]:
        """METEOR 1.5's aggregate score and per-item scores; ``replied()`` after each item's statistics
        (from the threads that read them: it must be thread-safe)."""
        if not hypotheses:
            return 0.0, []
        self.start(workers)
        with self._lock:
            procs = self._procs[: max(1, min(workers, len(hypotheses)))]
            size = -(-len(hypotheses) // len(procs))
            shards = [(i, min(i + size, len(hypotheses))) for i in range(0, len(hypotheses), size)]
            results: list[list[str] | BaseException] = [[] for _ in shards]

            def run(k: int) -> None:
                a, b = shards[k]
                try:
                    results[k] = procs[k].stats(references[a:b], hypotheses[a:b], replied)
                except BaseException as exc:  # re-raised below, in the caller's thread
                    results[k] = exc

            threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(1, len(shards))]
            for t in threads:
                t.start()
            run(0)
            for t in threads:
                t.join()
            stats: list[str] = []
            for r in results:
                if isinstance(r, BaseException):
                    raise r
                stats.extend(r)
            return procs[0].evaluate(stats)

    def processes(self) -> list[MeteorProcess]:
        with self._lock:
            return [p for p in self._procs if p.alive()]

    def close(self) -> None:
        with self._lock:
            for p in self._procs:
                p.close()
            self._procs = []


_METEOR = MeteorPool()


def close_java() -> None:
    """Stop the shared METEOR processes (about 1 GB each); the next ``coco`` call starts them again."""
    _METEOR.close()


# -- signatures ---------------------------------------------------------------------------------


@cache
def java_version() -> str:
    """The ``java`` version string (``17.0.15``), or ``unknown``."""
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r'version "([^"]+)"', done.stderr + done.stdout)
    return m.group(1) if m else "unknown"


def _version(dist: str) -> str:
    from ..packages import installed_version  # not importlib.metadata: see there

    return installed_version(dist) or "unknown"


def signature(backend: str, missing: str | None = None) -> str:
    """The provenance string stamped on every result (see the module docstring)."""
    policy = [f"missing={missing}"] if missing else []
    if backend == "coco":
        return "|".join(
            [
                "coco",
                "ptb-corenlp-3.4.1",
                "meteor-1.5",
                *policy,
                f"pycocoevalcap={_version('pycocoevalcap')}",
                f"java={java_version()}",
            ]
        )
    from .. import __version__

    return "|".join(
        [
            "python",
            "regex-ptb",
            "meteor_exact",
            *policy,
            f"pycocoevalcap={_version('pycocoevalcap')}",
            f"storyreasoning={__version__}",
        ]
    )


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class TextScores:
    """Scores of texts: corpus values, per-item values, and how they were computed."""

    overall: dict[str, float | None]
    per_item: list[dict[str, float | None]]
    backend: str
    signature: str
    timings: dict[str, float] = field(default_factory=dict)


SCORERS = ("ours", "pycocoevalcap")


class TextScorer:
    """Scores texts with one backend; making one starts the ``coco`` backend's Java at once.

    Make it first and :meth:`score` later: METEOR's JVM (seconds to load its paraphrase
    tables) and CoreNLP's tokenizer load while the caller reads and parses. ``tokenize``
    False starts no tokenizer (the texts will come tokenized), ``start`` False no Java
    until :meth:`score` needs it; :meth:`close` stops a tokenizer started and not used
    (the METEOR processes stay for later calls: :func:`close_java` stops them).
    """

    def __init__(
        self,
        backend: str = "auto",
        *,
        meteor_workers: int | None = None,
        tokenize: bool = True,
        start: bool = True,
    ) -> None:
        self.backend = resolve_backend(backend)
        self.workers = meteor_workers or default_meteor_workers()
        self._tokenizer: CoreNLPTokenizer | None = None
        if self.backend == "coco" and start:
            _METEOR.start(self.workers)  # the JVMs load their tables while the caller works
            if tokenize:
                self._tokenizer = CoreNLPTokenizer()

    def _tokenize(self, texts: list[str], progress: Progress) -> list[str]:
        if not texts:
            return []
        if self.backend != "coco":
            with progress(len(texts), "tokenizing") as advance:
                out = []
                for text in texts:
                    out.append(regex_ptb_tokenize(text))
                    advance(1)
                return out
        tokenizer, self._tokenizer = self._tokenizer, None
        with progress(len(texts), "tokenizing (CoreNLP)") as advance:
            return (tokenizer or CoreNLPTokenizer()).tokenize(texts, advance)

    def score(
        self,
        references: Sequence[Sequence[str]],
        hypotheses: Sequence[str],
        *,
        tokenized: bool = False,
        scorers: str = "ours",
        items: Sequence[ItemParts] | None = None,
    ) -> TextScores:
        """Score ``hypotheses[i]`` against the references ``references[i]``; see :func:`score_texts`
        (``items``: see :meth:`submit`)."""
        return self.submit(references, hypotheses, tokenized=tokenized, scorers=scorers, items=items).result()

    def submit(
        self,
        references: Sequence[Sequence[str]],
        hypotheses: Sequence[str],
        *,
        tokenized: bool = False,
        scorers: str = "ours",
        items: Sequence[ItemParts] | None = None,
        progress: Progress | None = None,
    ) -> PendingScores:
        """Like :meth:`score`, but returns once everything but METEOR is computed.

        METEOR (``coco``) goes on in its JVM, driven by a background thread; the
        caller may do other work before :meth:`PendingScores.result`. ``items``: each
        tokenized pair's :func:`item_parts`, computed earlier (in the scoring workers), for
        ``scorers="ours"``: the same numbers, less work here. ``progress``: how the tokenizing,
        BLEU, ROUGE-L and CIDEr here, and the wait for METEOR, show theirs (:data:`Progress`).
        """
        progress = progress or no_progress
        if scorers not in SCORERS:
            raise ValueError(f"unknown scorers {scorers!r}; use one of {', '.join(SCORERS)}")
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} reference lists for {len(hypotheses)} hypotheses")
        if any(len(refs) == 0 for refs in references):
            raise ValueError("every hypothesis needs at least one reference")
        if items is not None and (not tokenized or scorers != "ours" or len(items) != len(hypotheses)):
            raise ValueError("item parts go with tokenized texts scored by our scorers, one per hypothesis")
        backend = self.backend
        timings: dict[str, float] = {}
        n = len(hypotheses)

        t = time.perf_counter()
        if tokenized:
            refs = [list(r) for r in references]
            hyps = list(hypotheses)
        else:
            flat = [text for refs in references for text in refs] + list(hypotheses)
            it = iter(self._tokenize(flat, progress))
            refs = [[next(it) for _ in r] for r in references]
            hyps = [next(it) for _ in hypotheses]
        timings["tokenize"] = time.perf_counter() - t

        overall: dict[str, float | None] = dict.fromkeys(METRICS)
        per_item: list[dict[str, float | None]] = [dict.fromkeys(METRICS) for _ in range(n)]
        scores = TextScores(overall, per_item, backend, signature(backend), timings)
        if not n:
            return PendingScores(scores)
        meteor = None
        if backend == "coco":  # METEOR scores in its JVM while BLEU, ROUGE-L and CIDEr are computed here
            meteor = PendingMeteor(refs, hyps, self.workers)
        t = time.perf_counter()
        with progress(n, "BLEU, ROUGE-L, CIDEr") as advance:
            if scorers == "ours":
                stats = [item[0] for item in items] if items is not None else None
                b_corpus, b_items, r_mean, r_items, c_mean, c_items = _our_scores(refs, hyps, stats, advance)
            else:
                b_corpus, b_items, r_mean, r_items, c_mean, c_items = _pycocoevalcap_scores(refs, hyps)
                advance(n)
        timings["bleu_rouge_cider"] = time.perf_counter() - t
        for k in range(4):
            overall[f"bleu_{k + 1}"] = b_corpus[k]
            for i in range(n):
                per_item[i][f"bleu_{k + 1}"] = b_items[k][i]
        overall["rouge_l"] = r_mean
        overall["cider"] = c_mean
        for i in range(n):
            per_item[i]["rouge_l"] = r_items[i]
            per_item[i]["cider"] = c_items[i] if c_items else None
        t = time.perf_counter()
        overall["meteor_exact"], me_items = meteor_exact(
            refs, hyps, [item[1] for item in items] if items is not None else None
        )
        for i in range(n):
            per_item[i]["meteor_exact"] = me_items[i]
        timings["meteor_exact"] = time.perf_counter() - t
        return PendingScores(scores, meteor, progress)

    def pipes(self) -> list[int]:
        """The file descriptors of this process's pipes to the Java processes now running (see
        :mod:`.processes`: a forked worker must not keep them open)."""
        procs = [p._proc for p in _METEOR.processes()]
        if self._tokenizer is not None and self._tokenizer._proc is not None:
            procs.append(self._tokenizer._proc)
        return [f.fileno() for proc in procs for f in (proc.stdin, proc.stdout, proc.stderr) if f is not None]

    def close(self) -> None:
        tokenizer, self._tokenizer = self._tokenizer, None
        if tokenizer is not None:
            tokenizer.close()

    def __enter__(self) -> TextScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PendingMeteor:
    """METEOR scoring in a background thread (the shared processes do the work); :attr:`done` counts
    the items METEOR has scored, of :attr:`total`."""

    def __init__(self, refs: list[list[str]], hyps: list[str], workers: int) -> None:
        self._out: list = []
        self.started = time.perf_counter()
        self.total = len(hyps)
        self.done = 0
        self._count = threading.Lock()  # the replies are read by a thread per METEOR process
        self._thread = threading.Thread(target=self._run, args=(refs, hyps, workers), daemon=True)
        self._thread.start()

    def _replied(self) -> None:
        with self._count:
            self.done += 1

    def _run(self, refs: list[list[str]], hyps: list[str], workers: int) -> None:
        try:
            self._out.append(_METEOR.score(refs, hyps, workers, self._replied))
        except BaseException as exc:  # re-raised by result(), in the caller's thread
            self._out.append(exc)

    def result(self, progress: Progress | None = None) -> tuple[float, list[float]]:
        """The aggregate and per-item scores, once METEOR is done; ``progress``: how the wait shows
        the items scored (those scored already counted at once)."""
        if progress is not None and self._thread.is_alive():
            with progress(self.total, "METEOR (Java)") as advance:
                shown = 0
                while self._thread.is_alive():
                    self._thread.join(0.1)
                    done = self.done
                    if done > shown:
                        advance(done - shown)
                        shown = done
                return self._value()  # a failure said inside: the bar does not close as if done
        return self._value()

    def _value(self) -> tuple[float, list[float]]:
        self._thread.join()
        value = self._out[0]
        if isinstance(value, BaseException):
            raise value
        return value


class PendingScores:
    """What :meth:`TextScorer.submit` returns: the scores, METEOR's once :meth:`result` is called."""

    def __init__(
        self, scores: TextScores, meteor: PendingMeteor | None = None, progress: Progress | None = None
    ) -> None:
        self._scores = scores
        self._meteor = meteor
        self._progress = progress

    def result(self) -> TextScores:
        """The scores, waiting for METEOR when it is still running (showing its progress when
        :meth:`TextScorer.submit` was given a ``progress``)."""
        meteor, self._meteor = self._meteor, None
        if meteor is not None:
            scores = self._scores
            scores.overall["meteor"], items = meteor.result(self._progress)
            for row, value in zip(scores.per_item, items, strict=True):
                row["meteor"] = value
            scores.timings["meteor"] = time.perf_counter() - meteor.started
        return self._scores


def score_texts(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str],
    *,
    backend: str = "auto",
    tokenized: bool = False,
    scorers: str = "ours",
    meteor_workers: int | None = None,
) -> TextScores:
    """Score ``hypotheses[i]`` against the references ``references[i]`` (one or more each).

    Texts are raw strings, tokenized here (once, for all of them); ``tokenized=True``
    takes them as already tokenized (tokens separated by spaces) and skips that step.
    BLEU, ROUGE-L and CIDEr are pycocoevalcap's numbers: ``scorers="ours"`` (default)
    computes them with :mod:`.coco_scorers` (bit for bit the same BLEU and ROUGE-L, CIDEr
    to 1e-12, many times faster), ``"pycocoevalcap"`` with its own classes. METEOR
    (``"coco"`` only) runs on ``meteor_workers`` processes, by default
    :func:`default_meteor_workers`; the result does not depend on their number.
    """
    backend = resolve_backend(backend)
    if scorers not in SCORERS:
        raise ValueError(f"unknown scorers {scorers!r}; use one of {', '.join(SCORERS)}")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference lists for {len(hypotheses)} hypotheses")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    start = bool(hypotheses)  # nothing to score: start no Java
    with TextScorer(backend, meteor_workers=meteor_workers, tokenize=not tokenized, start=start) as scorer:
        return scorer.score(references, hypotheses, tokenized=tokenized, scorers=scorers)


def _our_scores(refs: list[list[str]], hyps: list[str], stats=None, advance=None):
    """:mod:`.coco_scorers`' BLEU, ROUGE-L and CIDEr-D (pycocoevalcap's numbers, faster)."""
    from .coco_scorers import coco_scores

    result = coco_scores(refs, hyps, stats, advance)
    b_corpus, b_items = result["bleu"]
    r_mean, r_items = result["rouge_l"]
    c_mean, c_items = result["cider"]
    return b_corpus, b_items, r_mean, r_items, c_mean, c_items


def _pycocoevalcap_scores(refs: list[list[str]], hyps: list[str]):
    """pycocoevalcap's own Bleu(4), Rouge and Cider on tokenized texts (pure Python: no Java)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    b_corpus, b_items = Bleu(4).compute_score(gts, res, verbose=0)
    r_mean, r_items = Rouge().compute_score(gts, res)
    if any(r.split() for rs in refs for r in rs):
        c_mean, c_items = Cider().compute_score(gts, res)
        c_mean, c_items = float(c_mean), [float(x) for x in c_items]
    else:  # pycocoevalcap's Cider fails when no reference has a word
        c_mean, c_items = None, []
    return (
        [float(x) for x in b_corpus],
        [[float(x) for x in row] for row in b_items],
        float(r_mean),
        [float(x) for x in r_items],
        c_mean,
        c_items,
    )


ItemParts = tuple[ItemStats, tuple[float, tuple[int, int, int, int]]]
"""A tokenized pair's part of the language metrics that needs no other pair: its BLEU counts and
ROUGE-L (:func:`.coco_scorers.item_stats`) and its exact-match METEOR (:func:`meteor_exact_item`)."""


def item_parts(reference: str, candidate: str) -> ItemParts:
    """:data:`ItemParts` of a tokenized reference and candidate."""
    return item_stats([reference], candidate), meteor_exact_item([reference], candidate)


class StoryTexts(NamedTuple):
    """One story's texts for the language metrics (:func:`story_texts`)."""

    reference: str
    candidate: str | None  # None: the output is missing
    tokens: tuple[str, str] | None = None  # the regex tokens of both (the candidate's: of "")
    parts: ItemParts | None = None  # with tokens: the tokens' item_parts


def story_texts(pair: StoryPair, *, tokenize: bool = False) -> StoryTexts:
    """One story's texts: the reference's and the candidate's (None: missing); ``tokenize`` adds
    their :func:`regex_ptb_tokenize` tokens (the ``python`` backend's) and those tokens'
    :func:`item_parts`, so that a worker process makes them."""
    reference = story_text(pair.reference)
    candidate = None if pair.candidate is None else story_text(pair.candidate)
    if not tokenize:
        return StoryTexts(reference, candidate)
    tokens = (regex_ptb_tokenize(reference), regex_ptb_tokenize(candidate or ""))
    return StoryTexts(reference, candidate, tokens, item_parts(*tokens))


def language(
    pairs: Iterable[StoryPair],
    *,
    backend: str = "auto",
    missing: str = "zero",
    scorers: str = "ours",
    meteor_workers: int | None = None,
) -> Scores:
    """BLEU-1…4, METEOR, ROUGE-L and CIDEr of each candidate story against its reference.

    ``missing="zero"`` (default) scores a missing output as an empty story, so it counts
    against the model; ``missing="exclude"`` leaves it out of every metric, as the
    original driver did (its per-story values are then None). ``scorers`` and
    ``meteor_workers``: see :func:`score_texts`.
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing policy {missing!r}; use one of {', '.join(MISSING_POLICIES)}")
    items = [(p.story_id, story_texts(p)) for p in pairs]
    return summarize(items, backend=backend, missing=missing, scorers=scorers, meteor_workers=meteor_workers)


def summarize(
    items: Sequence[tuple[str, StoryTexts | tuple[str, str | None]]],
    *,
    backend: str = "auto",
    missing: str = "zero",
    scorers: str = "ours",
    meteor_workers: int | None = None,
    scorer: TextScorer | None = None,
) -> Scores:
    """The language scores from each story's :func:`story_texts` (``(story_id, texts)`` in order).

    ``scorer``: a :class:`TextScorer` made earlier (its Java already loading); it is
    used instead of ``backend`` and ``meteor_workers``, and left open. When the backend
    is ``python`` and every story's texts carry their tokens, those are scored.
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing policy {missing!r}; use one of {', '.join(MISSING_POLICIES)}")
    if scorer is not None:
        return begin_summary(items, scorer=scorer, missing=missing, scorers=scorers)()
    scored = sum(1 for _, t in items if not (t[1] is None and missing == "exclude"))
    with TextScorer(backend, meteor_workers=meteor_workers, tokenize=False, start=scored > 0) as own:
        return begin_summary(items, scorer=own, missing=missing, scorers=scorers)()


def begin_summary(
    items: Sequence[tuple[str, StoryTexts | tuple[str, str | None]]],
    *,
    scorer: TextScorer,
    missing: str = "zero",
    scorers: str = "ours",
    progress: Progress | None = None,
) -> Callable[[], Scores]:
    """:func:`summarize` in two steps: this computes all but METEOR (which goes on in its JVM) and
    returns the function that waits for it and gives the :class:`Scores`.

    ``progress``: how each step shows its progress (:data:`Progress`): the tokenizing, BLEU,
    ROUGE-L and CIDEr (in this call), METEOR (in the function it returns)."""
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing policy {missing!r}; use one of {', '.join(MISSING_POLICIES)}")
    texts = [(sid, StoryTexts(*t)) for sid, t in items]
    missing_ids = [sid for sid, t in texts if t.candidate is None]
    scored = [(sid, t) for sid, t in texts if not (t.candidate is None and missing == "exclude")]
    tokenized = scorer.backend == "python" and all(t.tokens is not None for _, t in scored)
    parts = None
    if tokenized:
        refs = [[t.tokens[0]] for _, t in scored]  # type: ignore[index]
        hyps = [t.tokens[1] for _, t in scored]  # type: ignore[index]
        if scorers == "ours" and all(t.parts is not None for _, t in scored):
            parts = [t.parts for _, t in scored]
    else:
        refs = [[t.reference] for _, t in scored]
        hyps = [t.candidate or "" for _, t in scored]
    pending = scorer.submit(refs, hyps, tokenized=tokenized, scorers=scorers, items=parts, progress=progress)  # type: ignore[arg-type]

    def finish() -> Scores:
        result = pending.result()
        values = iter(result.per_item)  # the scored stories', in order
        per_story: dict[str, dict[str, float | None]] = {
            sid: dict.fromkeys(METRICS) if t.candidate is None and missing == "exclude" else next(values)
            for sid, t in texts
        }
        counts = {"n_stories": len(texts), "n_missing": len(missing_ids), "n_evaluated": len(scored)}
        return Scores(
            family="language",
            overall={**counts, **result.overall},
            per_story=per_story,
            conventions=_conventions(result.backend, missing),
            extra={
                "signature": signature(result.backend, missing),
                "backend": result.backend,
                "tokenizer": "ptb-corenlp-3.4.1" if result.backend == "coco" else "regex-ptb",
                "meteor": "meteor-1.5" if result.backend == "coco" else None,
                "missing": missing_ids,
                "missing_policy": missing,
                "empty_references": [sid for sid, t in scored if not t.reference],
            },
        )

    return finish


def _conventions(backend: str, missing: str) -> list[str]:
    lines = [
        "text: the story part (after </think>), every <…> tag removed, whitespace collapsed (the original's cleaning)",
        (
            "tokens: CoreNLP 3.4.1 PTBTokenizer, lower-cased, pycocoevalcap's punctuation tokens removed"
            if backend == "coco"
            else "tokens: regex PTB-like tokenizer (no Java), lower-cased, pycocoevalcap's punctuation removed"
        ),
        "BLEU-1..4: corpus-level, brevity penalty with the closest reference length (pycocoevalcap Bleu)",
        (
            "METEOR: Meteor 1.5 aggregate (-l en -norm)"
            if backend == "coco"
            else "METEOR: None (needs Java); meteor_exact is an exact-match approximation, not comparable"
        ),
        "ROUGE-L: mean over stories of the LCS F-score, beta=1.2 (pycocoevalcap Rouge)",
        "CIDEr: CIDEr-D (n=4, sigma=6, x10), IDF from the evaluated references (depends on the story set; "
        "pycocoevalcap Cider)",
        (
            "missing outputs: scored as an empty story (0 on every metric; ROUGE-L 1 if the reference is empty too)"
            if missing == "zero"
            else "missing outputs: left out of every metric (the original's convention)"
        ),
    ]
    return lines

"""The StoryReasoning language: chain-of-thought tables, grounded story tags, boxes.

Parse tolerantly (every parse returns its findings), render the published layout,
validate structure, stream-parse live output, and build prompts and chat messages.

>>> from storyreasoning.format import parse_output
>>> telling = parse_output(open("examples/outputs/well_formed.txt").read())  # doctest: +SKIP
>>> telling.validate(n_images=3).well_structured  # doctest: +SKIP
True

The parser's core modules (:data:`COMPILED_MODULES`) are compiled with mypyc when the
package is installed (``pip install``, editable or not); their ``.py`` sources are the same
code, run instead when ``STORYREASONING_PURE_PYTHON=1`` or, in a source checkout, when a
compiled module is older than its source (edited or pulled since the last build: the
sources are used, with one line on stderr saying how to recompile). :data:`COMPILED` says
which ones this process runs.
"""

# ruff: noqa: E402  (the parser's modules are imported after choosing compiled or sources)

import os
import sys

#: The modules compiled with mypyc (pyproject.toml's ``tool.hatch.build.targets.wheel.hooks.mypyc``).
COMPILED_MODULES = ("box", "cot", "cot_parser", "diagnostics", "events", "story", "story_parser", "stream")


class _SourceFinder:
    """Loads the compiled modules from their ``.py`` sources, all of them (compiled modules
    call each other natively: a mix would hold two different ``Box`` classes)."""

    def __init__(self, directory: str) -> None:
        self.paths = {f"{__name__}.{m}": os.path.join(directory, f"{m}.py") for m in COMPILED_MODULES}

    def find_spec(self, name, path=None, target=None):
        source = self.paths.get(name)
        if source is None:
            return None
        from importlib.util import spec_from_file_location

        return spec_from_file_location(name, source)


def _stale_parser(directory: str) -> str | None:
    """Why the compiled modules of a source checkout cannot be used, or None."""
    if not os.path.exists(os.path.join(directory, os.pardir, os.pardir, os.pardir, "pyproject.toml")):
        return None  # an installed wheel: its compiled modules and sources come together
    from importlib.machinery import EXTENSION_SUFFIXES

    present = set(os.listdir(directory))
    compiled = {}
    for module in COMPILED_MODULES:
        for suffix in EXTENSION_SUFFIXES:
            if module + suffix in present:
                compiled[module] = module + suffix
                break
    if not compiled:
        return None  # a pure-Python checkout
    newest = 0.0
    for module in COMPILED_MODULES:
        if module not in compiled:
            return f"the compiled parser has no {module} module"
        source = os.stat(os.path.join(directory, f"{module}.py")).st_mtime
        if os.stat(os.path.join(directory, compiled[module])).st_mtime < source:
            return "the compiled parser is older than its sources"
        newest = max(newest, source)
    # The modules' code is in a shared library beside the package (src/): an editable install also
    # copies it into site-packages, whose copy is imported first and is not rebuilt by a later
    # `pip wheel .` or `pip install .` into another environment.
    src = os.path.dirname(os.path.dirname(directory))
    for name in os.listdir(src):
        if "__mypyc" in name and name.endswith(tuple(EXTENSION_SUFFIXES)):
            for entry in sys.path:
                library = os.path.join(entry or os.curdir, name)
                if os.path.exists(library):
                    if os.stat(library).st_mtime < newest:
                        return "the compiled parser is older than its sources"
                    break
    return None


def _use_sources(reason: str | None) -> None:
    """Import the compiled modules from their sources from now on; say why unless asked for."""
    for module in COMPILED_MODULES:  # a failed compiled import may have left some behind
        sys.modules.pop(f"{__name__}.{module}", None)
    sys.meta_path.insert(0, _SourceFinder(os.path.dirname(__file__)))
    if reason:
        sys.stderr.write(
            f"storyreasoning: {reason}; using the Python sources (slower) - run `pip install -e .` again "
            "to recompile, or set STORYREASONING_PURE_PYTHON=1 to silence this\n"
        )


def _choose_parser() -> None:
    if os.environ.get("STORYREASONING_PURE_PYTHON", "").lower() in ("1", "true", "yes", "on"):
        _use_sources(None)
        return
    stale = _stale_parser(os.path.dirname(__file__))
    if stale is not None:
        _use_sources(stale)
        return
    try:
        from . import diagnostics  # noqa: F401  (a compiled module loads the parser's shared library)
    except ImportError as exc:  # compiled modules without their library (copied without it)
        if not (exc.name or "").endswith("__mypyc"):
            raise
        _use_sources(f"the compiled parser cannot load ({exc.name} is missing)")


_choose_parser()

from . import diagnostics
from .box import (
    QWEN_FACTOR,
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    Box,
    check_box_in_image,
    parse_box,
    smart_resize,
)
from .cot import (
    Character,
    CoT,
    ImageAnalysis,
    NarrativePhase,
    NarrativeRow,
    SceneObject,
    Setting,
    SettingElement,
    id_kind,
    render_cot,
)
from .cot_parser import CotBuilder, parse_cot
from .diagnostics import CODES, Diagnostic, Severity
from .events import (
    Event,
    ImageSectionStarted,
    NarrativeRowCompleted,
    NarrativeStarted,
    SegmentClosed,
    SegmentStarted,
    SpanClosed,
    SpanOpened,
    TableRowCompleted,
    TextAppended,
    ThinkClosed,
    ThinkOpened,
)
from .story import GroundedStory, Segment, Span, clean_text, render_story
from .story_parser import StoryBuilder, parse_story
from .stream import StreamParser, Telling, parse_output, split_output
from .validate import Verdict, validate

#: True when this process runs the mypyc-compiled parser, False when its Python sources (all eight
#: modules come one way or the other, never mixed: see _choose_parser).
COMPILED: bool = diagnostics.COMPILED

# Images and prompts are not needed to parse or check an output (``storyreasoning check``
# starts without them and what they import): their names load on first use.
_LAZY = {
    "image_data_url": "images",
    "image_size": "images",
    "open_image": "images",
    "DEFAULT_PROMPT": "prompts",
    "INFERENCE_PROMPTS": "prompts",
    "SYSTEM_PROMPT": "prompts",
    "TRAINING_PROMPTS": "prompts",
    "assistant_target": "prompts",
    "choose_prompt": "prompts",
    "openai_messages": "prompts",
    "transformers_messages": "prompts",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def render_output(cot: CoT | None, story: GroundedStory | None) -> str:
    """A whole output in the published envelope: ``<think>\\n{CoT}\\n</think>\\n{story}``."""
    from .prompts import assistant_target

    return assistant_target(
        render_cot(cot) if cot is not None else "", render_story(story) if story is not None else ""
    )


__all__ = [
    "CODES",
    "COMPILED",
    "COMPILED_MODULES",
    "DEFAULT_PROMPT",
    "INFERENCE_PROMPTS",
    "QWEN_FACTOR",
    "QWEN_MAX_PIXELS",
    "QWEN_MIN_PIXELS",
    "SYSTEM_PROMPT",
    "TRAINING_PROMPTS",
    "Box",
    "Character",
    "CoT",
    "CotBuilder",
    "Diagnostic",
    "Event",
    "GroundedStory",
    "ImageAnalysis",
    "ImageSectionStarted",
    "NarrativePhase",
    "NarrativeRow",
    "NarrativeRowCompleted",
    "NarrativeStarted",
    "SceneObject",
    "Segment",
    "SegmentClosed",
    "SegmentStarted",
    "Setting",
    "SettingElement",
    "Severity",
    "Span",
    "SpanClosed",
    "SpanOpened",
    "StoryBuilder",
    "StreamParser",
    "TableRowCompleted",
    "Telling",
    "TextAppended",
    "ThinkClosed",
    "ThinkOpened",
    "Verdict",
    "assistant_target",
    "check_box_in_image",
    "choose_prompt",
    "clean_text",
    "id_kind",
    "image_data_url",
    "image_size",
    "open_image",
    "openai_messages",
    "parse_box",
    "parse_cot",
    "parse_output",
    "parse_story",
    "render_cot",
    "render_output",
    "render_story",
    "smart_resize",
    "split_output",
    "transformers_messages",
    "validate",
]

"""The StoryReasoning language: chain-of-thought tables, grounded story tags, boxes.

Parse tolerantly (every parse returns its findings), render the published layout,
validate structure, stream-parse live output, and build prompts and chat messages.

>>> from storyreasoning.format import parse_output
>>> telling = parse_output(open("examples/outputs/well_formed.txt").read())  # doctest: +SKIP
>>> telling.validate(n_images=3).well_structured  # doctest: +SKIP
True
"""

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

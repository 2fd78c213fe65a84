"""The structural verdict: is an output *well-structured*?

QwenStoryteller2 reports the share of well-structured outputs; the original code has no
function for it. Ours follows the checks the original dataset tools made
(``validate_cot``, ``validate_story``, ``validate_dataset``), made explicit:

1. the output has a CoT and a story, and the story has at least one ``<gdi>`` segment
   (text with neither a CoT nor a ``<gdi>`` segment is not a grounded story);
2. the CoT has one image section per image, numbered 1…N, and the story one ``<gdi>``
   segment per image, numbered 1…N (N is the number of images when known, else the
   count of CoT sections);
3. the tables parse: no parse finding of severity ``error`` (a box that is not a box, a
   row without an id), and every image has at least one Setting row (with
   ``strict=True``, as the original ``validate_dataset``, also at least one Character
   and one Object row);
4. the Narrative Structure exists and names all five phases;
5. every id the story uses is defined somewhere in the CoT;
6. with image sizes, every box lies inside its image (10 % tolerance, as the original).

A story that names an entity in a segment whose image does not list it gets a
warning (``id-not-in-image``), not a failure: a story may recall a character who is
off-screen. Evaluation counts these as hallucination candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .box import check_box_in_image
from .cot import CoT, NarrativePhase
from .diagnostics import Diagnostic, Severity, error, warning
from .records import dataclass_methods
from .story import GroundedStory


@dataclass(init=False, repr=False, eq=False)
class Verdict:
    well_structured: bool
    reasons: list[Diagnostic] = field(default_factory=list)  # the errors that decide the verdict
    findings: list[Diagnostic] = field(default_factory=list)  # everything: parse findings and validation

    def __init__(
        self,
        well_structured: bool,
        reasons: list[Diagnostic] | None = None,
        findings: list[Diagnostic] | None = None,
    ):
        self.well_structured = well_structured
        self.reasons = [] if reasons is None else reasons
        self.findings = [] if findings is None else findings

    def __bool__(self) -> bool:
        return self.well_structured


dataclass_methods(Verdict)


def _numbering(numbers: list[int]) -> bool:
    return numbers == list(range(1, len(numbers) + 1))


def validate(
    telling=None,
    *,
    cot: CoT | None = None,
    story: GroundedStory | None = None,
    n_images: int | None = None,
    image_sizes: list[tuple[int, int]] | None = None,
    strict: bool = False,
    require_cot: bool = True,
    require_story: bool = True,
) -> Verdict:
    """Judge a :class:`~storyreasoning.format.stream.Telling` (or a ``cot`` and ``story``).

    ``image_sizes`` is a list of ``(width, height)``, one per image; it implies
    ``n_images``. ``require_cot``/``require_story`` let a lone CoT or story file be judged
    on its own.
    """
    if telling is not None:
        cot, story = telling.cot, telling.story
        findings = list(telling.diagnostics)
    else:
        findings = [*(cot.diagnostics if cot else []), *(story.diagnostics if story else [])]
    if image_sizes is not None:
        if n_images is not None and n_images != len(image_sizes):
            raise ValueError(f"n_images={n_images} but {len(image_sizes)} image sizes were given")
        n_images = len(image_sizes)
    own: list[Diagnostic] = []

    if cot is None:
        if require_cot:
            own.append(
                error(0, "no-cot", "the output has no chain-of-thought (CoT tables inside <think>…</think>)")
            )
    else:
        _check_cot(cot, n_images, image_sizes, strict, own)
    if story is None:
        if require_story:
            own.append(error(0, "no-story", "the output has no grounded story (<gdi imageN> segments)"))
    elif not story.image_segments:  # text, but nothing tied to an image: not a grounded story
        own.append(
            error(
                0,
                "no-segments",
                "the story has no <gdi imageN> segment: none of its text is tied to an image",
            )
        )
    else:
        segments = story.image_segments
        expected = n_images if n_images is not None else (len(cot.images) if cot is not None else None)
        if expected is not None and len(segments) != expected:
            of = f"{expected} images" if n_images is not None else f"{expected} CoT image sections"
            own.append(error(0, "segment-count", f"the story has {len(segments)} <gdi> segments for {of}"))
        numbers = [s.image for s in segments]
        if not _numbering(numbers):  # type: ignore[arg-type]
            own.append(
                error(
                    0,
                    "segment-number-order",
                    f"story segments are numbered {_list(numbers)}, not 1…{len(numbers)}",
                )
            )
    if cot is not None and story is not None:
        _check_ids(cot, story, own)

    all_findings = sorted(findings + own, key=lambda d: d.line)
    reasons = [d for d in all_findings if d.severity is Severity.ERROR]
    return Verdict(well_structured=not reasons, reasons=reasons, findings=all_findings)


def _check_cot(cot: CoT, n_images: int | None, image_sizes, strict: bool, own: list[Diagnostic]) -> None:
    numbers = [image.number for image in cot.images]
    if n_images is not None and len(numbers) != n_images:
        own.append(
            error(0, "image-count", f"the CoT has {len(numbers)} image sections for {n_images} images")
        )
    if not _numbering(numbers):
        own.append(
            error(
                0,
                "image-number-gap",
                f"CoT image sections are numbered {_list(numbers)}, not 1…{len(numbers)}",
            )
        )
    for image in cot.images:
        if not image.settings:
            own.append(error(image.line, "empty-table", f"Image {image.number} has no Setting rows"))
        if strict:
            if not image.characters:
                own.append(error(image.line, "empty-table", f"Image {image.number} has no Character rows"))
            if not image.objects:
                own.append(error(image.line, "empty-table", f"Image {image.number} has no Object rows"))
        if image_sizes is not None and 1 <= image.number <= len(image_sizes):
            width, height = image_sizes[image.number - 1]
            for row in (*image.characters, *image.objects):
                if row.box is not None:
                    own.extend(check_box_in_image(row.box, width, height, row.line))
    if cot.narrative is None:
        own.append(error(0, "no-narrative", "the CoT has no Narrative Structure table"))
    else:
        present = cot.phases()
        for phase in NarrativePhase:
            if phase not in present:
                own.append(
                    error(0, "missing-phase", f"the Narrative Structure lacks the {phase.value} phase")
                )


def _check_ids(cot: CoT, story: GroundedStory, own: list[Diagnostic]) -> None:
    known = cot.entity_ids()
    per_image = {image.number: set(image.entity_ids()) for image in cot.images}
    reported: set[tuple[int | None, str]] = set()
    for segment in story.segments:
        for span in segment.spans:
            line = span.line or segment.line  # the line of its tag (0: a story not parsed from text)
            for eid in span.ids:
                if eid not in known:
                    if (None, eid) not in reported:
                        reported.add((None, eid))
                        own.append(
                            error(
                                line,
                                "unknown-story-id",
                                f"the story uses {eid}, which the CoT does not define",
                            )
                        )
                elif segment.image is not None and eid not in per_image.get(segment.image, set()):
                    if (segment.image, eid) not in reported:
                        reported.add((segment.image, eid))
                        own.append(
                            warning(
                                line,
                                "id-not-in-image",
                                f"segment {segment.image} names {eid}, which Image {segment.image} does not list",
                            )
                        )


def _list(numbers: list) -> str:
    shown = ", ".join("?" if n is None else str(n) for n in numbers[:12])
    return (shown + ", …") if len(numbers) > 12 else (shown or "(none)")

"""``CoT.image(number)``: an index, so that a loop over a story's images is linear."""

from __future__ import annotations

import copy
import dataclasses
import gc
import time
from pathlib import Path

from storyreasoning.format import CoT, ImageAnalysis, parse_output

LIGHTHOUSE = Path(__file__).parents[2] / "examples" / "outputs" / "lighthouse.txt"


def _cot(numbers: list[int]) -> CoT:
    return CoT(images=[ImageAnalysis(number=n) for n in numbers])


def test_image_finds_each_number_and_none_for_a_missing_one() -> None:
    cot = _cot([1, 2, 3, 5])
    assert [cot.image(n).number for n in (1, 2, 3, 5)] == [1, 2, 3, 5]
    assert cot.image(4) is None
    assert cot.image(0) is None


def test_a_repeated_number_gives_the_first_image_as_the_scan_did() -> None:
    cot = _cot([1, 2, 2])
    assert cot.image(2) is cot.images[1]


def test_the_index_follows_changes_to_the_images() -> None:
    cot = _cot([1, 2])
    assert cot.image(3) is None
    cot.images.append(ImageAnalysis(number=3))  # another length
    assert cot.image(3) is cot.images[2]
    cot.images = [ImageAnalysis(number=7)]  # another list
    assert cot.image(1) is None and cot.image(7) is cot.images[0]
    cot.images[0].number = 8  # renumbered in place: the hit is checked
    assert cot.image(7) is None and cot.image(8) is cot.images[0]
    cot.images[0] = ImageAnalysis(number=9)  # replaced in place at the same length
    cot.reindex()
    assert cot.image(9) is cot.images[0]


def test_the_index_is_not_part_of_the_data() -> None:
    cot = parse_output(LIGHTHOUSE.read_text(encoding="utf-8")).cot
    fresh = copy.deepcopy(cot)
    assert cot.image(2) is cot.images[1]
    assert cot == fresh and repr(cot) == repr(fresh)
    assert dataclasses.asdict(cot) == dataclasses.asdict(fresh)
    assert "_index" not in dataclasses.asdict(cot)
    copied = copy.deepcopy(cot)  # the copy's index points into the copy
    assert copied.image(2) is copied.images[1]


def _lookups(n: int) -> float:
    cot = _cot(list(range(1, n + 1)))
    best = float("inf")
    for _ in range(3):
        gc.disable()
        try:
            start = time.process_time()  # CPU time: waiting for a core is not counted
            for number in range(1, n + 1):
                cot.image(number)
            best = min(best, time.process_time() - start)
        finally:
            gc.enable()
    return best


def test_looking_up_every_image_is_linear_in_the_images() -> None:
    # 16 times the images: 16x the time when each lookup is O(1), 256x when it scans the list
    ratios = []
    for _ in range(3):
        ratios.append(_lookups(4000) / _lookups(250))
        if ratios[-1] < 64:
            break
    assert min(ratios) < 64, f"16x the images took {min(ratios):.0f}x the time (linear: 16, quadratic: 256)"

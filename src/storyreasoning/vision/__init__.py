"""Classical computer vision for the baseline storyteller: no model weights.

* :mod:`storyreasoning.vision.detect`: people from OpenCV's Haar face cascades (frontal
  and profile) and its HOG people detector, each face widened into a person box;
* :mod:`storyreasoning.vision.reid`: appearance descriptors (HSV colour histograms of
  head and torso, a small grayscale face thumbnail), identity assignment across frames,
  and colour names for descriptions.

Both need the ``vision`` extra (``opencv-python-headless`` and ``numpy``); importing this
package itself loads neither. OpenCV 5 moved the Haar cascades and the HOG detector out
of the main package, so OpenCV 4 is needed (``opencv-python-headless>=4.9,<5``).
"""

from __future__ import annotations

OPENCV_HINT = "pip install 'storyreasoning[vision]'"


def require_cv2():
    """``(cv2, numpy)``, or a :class:`~storyreasoning.errors.UsageError` saying what to install."""
    from ..errors import UsageError

    try:
        import cv2
        import numpy
    except ImportError:
        raise UsageError(f"the baseline storyteller needs OpenCV: {OPENCV_HINT}") from None
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "HOGDescriptor"):
        raise UsageError(
            f"the baseline storyteller needs OpenCV 4 (OpenCV {cv2.__version__} has no Haar cascades "
            "or HOG people detector): pip install 'opencv-python-headless>=4.9,<5'"
        )
    return cv2, numpy

"""The build's perceiver, assembled from its settings: one place for the single-process build and every
Ray worker (:mod:`.distributed`), so both see alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import BuildSettings


def make_perceiver(settings: BuildSettings) -> Any:
    """The build's perception, made from its settings: the OpenCV baseline or ``--detector`` (with
    ``--embedder``), re-identified by face (``--faces``), with backgrounds (``--segmenter`` or colour
    clusters) and landmarks (``--landmarks-endpoint``). The single-process build and every Ray worker
    (builder/distributed.py) make it here, so both see alike."""
    from ..models import check_device
    from ..tell.baseline import BaselineTeller

    s = settings
    # checked here too: a Ray worker's GPUs are its own (the driver checks the device of a local build)
    device = check_device(s.device)
    landmarks = None
    if s.landmarks_endpoint:  # asked for its model first: a server that is down fails before any model loads
        from .landmarks import LandmarkFinder

        landmarks = LandmarkFinder.connect(
            s.landmarks_endpoint, model=s.landmarks_model, api_key=s.api_key, timeout=s.timeout,
            retries=s.retries, max_landmarks=s.max_landmarks,
        )  # fmt: skip
    things: tuple[str, ...] = ()  # what the detector finds is never a background
    if s.detector:
        from .perceive import ModelPerceiver

        perceiver = ModelPerceiver(
            s.detector,
            embedder=s.embedder,
            threshold=s.detector_threshold,
            reid_threshold=s.reid_threshold,
            device=device,
            batch=s.perception_batch,
        )
        things = perceiver.labels()
    else:
        perceiver = BaselineTeller()
    # faces: auto when dlib is installed; dlib required (one line naming the extra when missing); none
    if s.faces != "none":
        from .faces import with_faces

        perceiver = with_faces(
            perceiver,
            backend=s.faces,
            detector=s.face_detector,
            threshold=s.face_threshold,
            upsample=s.face_upsample,
            max_side=s.face_max_side,
        )
    # backgrounds: a panoptic segmenter's stuff, else colour clusters; then landmarks (builder/background.py,
    # builder/landmarks.py)
    from .background import with_backgrounds

    perceiver = with_backgrounds(
        perceiver, segmenter=s.segmenter, threshold=s.segmenter_threshold, stuff_labels=s.stuff_labels,
        things=things, min_area=s.background_min_area, max_regions=s.max_backgrounds,
        clusters=s.background_clusters, device=device, batch=s.perception_batch,
        look_distance=s.background_look_distance,
    )  # fmt: skip
    if landmarks is not None:
        from .landmarks import LandmarkPerceiver

        perceiver = LandmarkPerceiver(perceiver, landmarks, concurrency=s.landmarks_concurrency)
    return perceiver


__all__ = ["make_perceiver"]

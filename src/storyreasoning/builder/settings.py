"""The settings of ``storyreasoning build``: one declaration for its options, its config file and build.json."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import UsageError
from ..models import DEVICES, check_device
from ..settings import REQUIRED, argument, option
from ..tell.settings import EndpointOptions, SamplingOptions

PERCEPTION = "Perception"
FACES = "Faces"
VIDEOS = "Videos"
SETTING = "Backgrounds and landmarks"
PUBLISHING = "Splits and publishing"
SCALE = "Scale"


@dataclass(frozen=True, kw_only=True)
class BuildSettings(EndpointOptions, SamplingOptions):
    """Build a StoryReasoning dataset from raw frames or videos."""

    frames: Path = argument(
        help="A folder of frames (one story), a folder of such folders (one story each), or videos (a file or "
        "a folder of them: one key frame per shot).",
        operational=True,  # where the frames are read; each story records its frames' sources
    )
    out: Path = option(
        REQUIRED, "--out", "-o", help="Dataset folder to write (story folders; resumed when it exists).",
        operational=True,
    )  # fmt: skip
    writer: Literal["template", "chat"] = option(
        "template",
        help="template: the baseline's templates, offline; chat: a language model at --endpoint writes the "
        "CoT and the story.",
    )
    max_new_tokens: int = option(8192, help="Longest answer.", panel="Sampling and prompt")
    # the filters (which stories are kept) and the pace are operational: a resumed build may change them,
    # a story's text does not depend on them (each story's meta.json says its attempts, verdict and people)
    max_tries: int = option(4, min=1, help="Attempts per text, each told what was wrong.", operational=True)
    min_frames: int = option(2, min=1, help="Skip stories with fewer frames.", operational=True)
    max_frames: int | None = option(None, min=1, help="Keep at most the first N frames of a story.")
    limit: int | None = option(None, min=1, help="Only the first N stories.", operational=True)
    keep_invalid: bool = option(
        False, help="Keep stories the validator rejects (marked in their meta.json).", operational=True
    )
    require_person: bool = option(
        True,
        help="Skip a story in whose frames perception found no person (as the original dataset did); noted in "
        "skipped.jsonl and not perceived again when the build resumes with the same settings.",
        operational=True,
    )
    concurrency: int | None = option(
        None, min=1,
        help="Stories written at once: requests in flight against the endpoint, while perception runs ahead of "
        "them in one place (default: 4 for --writer chat, 1 for template).",
        operational=True,
    )  # fmt: skip
    allow_mixed: bool = option(
        False,
        help="Continue a build whose recorded settings or models differ from these: the new ones are recorded "
        "beside the old in build.json and each story's meta.json names the ones that built it.",
        operational=True,
    )
    detector: str | None = option(
        None, panel=PERCEPTION, place=True,
        help="An object detector (transformers hub id or folder, e.g. facebook/detr-resnet-50) for people and "
        "objects instead of the OpenCV baseline.",
    )  # fmt: skip
    embedder: str | None = option(
        None, panel=PERCEPTION, place=True,
        help="A vision model (e.g. google/siglip-base-patch16-224) whose crop features re-identify detections "
        "across frames; without it, detections are tracked by overlap.",
    )  # fmt: skip
    detector_threshold: float = option(0.7, min=0.0, max=1.0, help="Lowest detection score kept.",
                                       panel=PERCEPTION)  # fmt: skip
    reid_threshold: float = option(0.85, min=-1.0, max=1.0, help="Lowest cosine similarity to join an identity.",
                                   panel=PERCEPTION)  # fmt: skip
    device: str = option(
        "auto", help=f"Device for the perception models: {DEVICES}.", panel=PERCEPTION, operational=True
    )
    perception_batch: int = option(
        8, min=1, panel=PERCEPTION, operational=True, metavar="N",
        help="Frames of a story per forward of the detector and the segmenter (the embedder takes 8 crops per "
        "frame); only frames the processor makes one shape go together, never padded, so results are those of "
        "one frame at a time (to float rounding).",
    )  # fmt: skip
    faces: Literal["auto", "dlib", "none"] = option(
        "auto", panel=FACES,
        help="Re-identify characters by face with dlib's face detector and ResNet face encoder (the faces "
        "extra); auto: when installed; none: by colour or --embedder only.",
    )  # fmt: skip
    face_detector: Literal["hog", "cnn"] = option(
        "hog", panel=FACES,
        help="hog: dlib's frontal face detector, fast on a CPU; cnn: its MMOD CNN, finds more turned faces, "
        "slow on a CPU.",
    )  # fmt: skip
    face_threshold: float = option(
        0.6, min=0.01, max=2.0, panel=FACES,
        help="Largest distance between the 128-number face descriptors of one person (to a character's mean "
        "face; dlib's 0.6).",
    )  # fmt: skip
    face_upsample: int = option(
        1, min=0, max=3, panel=FACES,
        help="Enlarge frames this many times by 2 to find small faces (1: down to about 40 pixels).",
    )  # fmt: skip
    face_max_side: int = option(
        1280, min=64, panel=FACES, help="Faces are searched on a copy at most this many pixels long."
    )  # fmt: skip
    segmenter: str | None = option(
        None, panel=SETTING, metavar="MODEL",
        help="A panoptic segmenter (Mask2Former or OneFormer: hub id or folder, e.g. "
        "facebook/mask2former-swin-large-coco-panoptic) whose stuff segments (sky, wall, floor…) become the bg "
        "boxes; without it, colour clusters between the people and objects do.",
    )  # fmt: skip
    segmenter_threshold: float = option(
        0.5, min=0.0, max=1.0, panel=SETTING, help="Lowest score of a segment the segmenter keeps."
    )  # fmt: skip
    stuff_labels: str | None = option(
        None, panel=SETTING, metavar="LABELS",
        help="Comma-separated segmenter classes that are backgrounds (default: the classes that are not things, "
        "as the checkpoint marks them, else all but the 80 COCO thing classes and the --detector's labels).",
    )  # fmt: skip
    background_min_area: float = option(
        0.03, min=0.0, max=0.99, panel=SETTING,
        help="Smallest background piece kept, as a share of the frame (each segment or colour cluster is cut "
        "into its connected pieces).",
    )  # fmt: skip
    max_backgrounds: int = option(3, min=1, panel=SETTING, help="Most bg boxes per frame (the largest).")
    background_clusters: int = option(
        5, min=2, max=16, panel=SETTING, help="Without --segmenter: colour clusters per frame (k-means k)."
    )  # fmt: skip
    background_look_distance: float = option(
        6.0, above=0.0, panel=SETTING, metavar="CIELAB",
        help="A region keeps an earlier bg id of its label only when it looks alike: the mean and spread of its "
        "pixels' CIE Lab colour (lightness counting half) closer than this to a look that id had; else a new id "
        "(larger joins more; 1000: by label alone).",
    )  # fmt: skip
    # operational: the URL says where the model runs; whether landmarks are sought, and by which model, is
    # recorded by the perceiver's description (its models), which a resume compares
    landmarks_endpoint: str | None = option(
        None, panel=SETTING, metavar="URL", operational=True, url=True,
        help="An OpenAI-compatible server with a vision language model asked for named landmarks (Eiffel Tower, "
        "Times Square) in each frame: lm boxes. Without it, no landmarks.",
    )  # fmt: skip
    landmarks_model: str | None = option(
        None, panel=SETTING, metavar="NAME",
        help="Model name on the landmark server (default: the first it lists).",
    )  # fmt: skip
    max_landmarks: int = option(5, min=1, panel=SETTING, help="Most landmarks kept per frame.")
    landmarks_concurrency: int = option(
        4, min=1, panel=SETTING, operational=True, metavar="N",
        help="Landmark requests in flight for the frames of a story (answers read in frame order).",
    )  # fmt: skip
    frames_per_story: int = option(
        5, min=1, panel=VIDEOS,
        help="Videos: most key frames per story; a longer scene is split into stories of balanced length.",
    )  # fmt: skip
    shot_threshold: float = option(
        27.0, min=0.0, max=255.0, panel=VIDEOS,
        help="Videos: PySceneDetect's ContentDetector threshold: the mean change of hue, saturation and "
        "brightness between two frames (0-255) that cuts a shot.",
    )  # fmt: skip
    min_shot: float = option(
        0.5, min=0.0, panel=VIDEOS,
        help="Videos: shortest shot, seconds (PySceneDetect's min_scene_len, suppress mode): a cut sooner than "
        "this after the last cut kept (or the start) is ignored and the shot goes on across it; a shorter last "
        "shot has no key frame.",
    )  # fmt: skip
    key_frame: Literal["sharpest", "middle"] = option(
        "sharpest", panel=VIDEOS,
        help="Videos: a shot's key frame: the sharpest of nine frames spread over it (variance of the "
        "Laplacian; ties go to the middle), or its middle frame.",
    )  # fmt: skip
    scenes: Literal["auto", "faces", "visual", "none"] = option(
        "auto", panel=VIDEOS,
        help="Videos: shots make one scene (no story crosses a scene) when they share a face or look alike "
        "(faces), look alike (visual: colour histograms), or never (none: a video is one run); auto: faces "
        "when dlib is installed and --faces allows it, else visual.",
    )  # fmt: skip
    scene_threshold: float = option(
        0.5, min=-1.0, max=1.0, panel=VIDEOS,
        help="Videos: lowest correlation of two key frames' colour histograms to be one scene.",
    )  # fmt: skip
    # where perception runs: never what a story says (operational); see builder/distributed.py
    ray: str | None = option(
        None, panel=SCALE, operational=True, metavar="auto|ADDRESS",
        help="Perceive on Ray: auto: the cluster RAY_ADDRESS names, else the one `ray start` last started on "
        "this machine, else a new local Ray (shut down at the end); ADDRESS: the head node's host:port. Models "
        "load once per worker; frames travel as bytes; stories are written here (see README). Needs the ray "
        "extra.",
    )  # fmt: skip
    ray_workers: int | None = option(
        None, min=1, panel=SCALE, operational=True, metavar="N",
        help="--ray: perception workers (actors, each holding its models; default: as many as the cluster's "
        "GPUs hold at --ray-gpus-per-worker, else its CPUs less one).",
    )  # fmt: skip
    ray_gpus_per_worker: float | None = option(
        None, min=0.0, panel=SCALE, operational=True, metavar="GPUS",
        help="--ray: GPUs per perception worker (0.5: two share one; default: 1 when the cluster has a GPU, "
        "else 0).",
    )  # fmt: skip
    # publishing: how the finished folder is split and shared, not what a story says (operational)
    split: float | None = option(
        None, min=0.0, max=1.0, panel=PUBLISHING, operational=True, metavar="FRACTION",
        help="Share of stories for the train split, the rest test (0.85 as the published dataset), by identity "
        "group: a video's or a folder's stories never straddle two splits (splits.json; see README). Without "
        "it, no split.",
    )  # fmt: skip
    push_to_hub: str | None = option(
        None, panel=PUBLISHING, operational=True, metavar="REPO_ID",
        help="After the build, upload the dataset to this Hub dataset repository (owner/name) as StoryReasoning "
        "parquet with its card; the token is checked before the build starts.",
    )  # fmt: skip
    license: str | None = option(
        None, panel=PUBLISHING, operational=True, metavar="ID",
        help="The dataset's license as the Hub names it (cc-by-4.0, mit, other, …), written into the dataset card; "
        "default: unknown, and the card says to set it (the frames keep the license of their source).",
    )  # fmt: skip
    private: bool = option(False, help="--push-to-hub: create the repository private.", panel=PUBLISHING,
                           operational=True)  # fmt: skip
    token: str | None = option(
        None, secret=True, show_default=False, panel=PUBLISHING, operational=True,
        help="--push-to-hub: a Hub token with write access (default: HF_TOKEN or the saved login).",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.split is not None and not 0.0 < self.split < 1.0:
            raise UsageError(f"--split is the train share, between 0 and 1 (e.g. 0.85), not {self.split}")
        if self.push_to_hub is not None:
            from ..data.hub import check_repo_id

            check_repo_id(self.push_to_hub)
        if self.license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,63}", self.license):
            raise UsageError(
                f"--license {self.license!r} is not a license id as the Hub names them; use one such as "
                "cc-by-4.0, cc-by-nc-4.0, mit, apache-2.0 or other"
            )
        if (self.private or self.token) and not self.push_to_hub:
            raise UsageError("--private and --token are for --push-to-hub REPO_ID; give it too")
        if self.writer == "chat" and not self.endpoint:
            raise UsageError(
                "--writer chat needs --endpoint URL (an OpenAI-compatible server: vLLM, transformers serve)"
            )
        if self.writer == "template" and self.endpoint:
            raise UsageError("--endpoint is for --writer chat; the template writer needs no server")
        if self.embedder and not self.detector:
            raise UsageError("--embedder re-identifies a detector's detections; give --detector too")
        if self.stuff_labels and not self.segmenter:
            raise UsageError("--stuff-labels chooses among a segmenter's classes; give --segmenter too")
        if (self.ray_workers is not None or self.ray_gpus_per_worker is not None) and not self.ray:
            raise UsageError(
                "--ray-workers and --ray-gpus-per-worker are for --ray auto|ADDRESS; give it too"
            )
        if self.landmarks_model and not self.landmarks_endpoint:
            raise UsageError(
                "--landmarks-model names a model on the landmark server; give --landmarks-endpoint too"
            )
        if not self.ray:  # before any work, as tell and train; on Ray each worker checks its own GPUs
            check_device(self.device)

    @property
    def stories_at_once(self) -> int:
        """--concurrency, or its default: 4 stories in flight against an endpoint, 1 for the templates."""
        if self.concurrency is not None:
            return self.concurrency
        return 4 if self.writer == "chat" else 1

    def resolved(self) -> dict:
        """What the record holds beyond the options as given (see :func:`storyreasoning.settings.record`)."""
        return {"concurrency": self.stories_at_once}


__all__ = ["BuildSettings"]

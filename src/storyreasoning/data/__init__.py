"""StoryReasoning datasets: one sample type, many places to read and write it.

* :class:`StorySample` / :class:`Frame`: a story and its (still encoded) frames;
* :func:`load_stories`: hub id, ``save_to_disk`` folder, parquet files or story folders,
  read lazily into a :class:`StoryDataset`;
* :func:`write_parquet`, :func:`write_folders`, :func:`write_disk`: the same formats out;
* :func:`training_messages` and :mod:`.budget`: what a trainer consumes;
* :func:`contrastive_sequences`: incoherent sequences for contrastive preference training.

Importing this package is light: ``datasets``, ``pyarrow`` and transformers are imported
by the functions that need them.
"""

from __future__ import annotations

from .folder import read_story_folder, write_story_folder
from .sample import Frame, StorySample
from .sources import SampleList, StoryDataset, load_hub, load_stories
from .writers import write_disk, write_folders, write_parquet

__all__ = [
    "Frame",
    "SampleList",
    "StoryDataset",
    "StorySample",
    "load_hub",
    "load_stories",
    "read_story_folder",
    "write_disk",
    "write_folders",
    "write_parquet",
    "write_story_folder",
]

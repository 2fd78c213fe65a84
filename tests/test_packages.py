"""``installed_version`` answers as ``importlib.metadata.version`` does, without importing it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distributions, version

from storyreasoning.packages import installed_version


def test_every_installed_distribution_has_the_version_importlib_metadata_gives():
    names = {d.metadata["Name"] for d in distributions()}
    assert len(names) > 20  # this environment's real packages, pycocoevalcap and torch among them
    for name in sorted(names):
        assert installed_version(name) == version(name), name
    # the spellings pip accepts for one project
    assert installed_version("PyYAML") == installed_version("pyyaml") == version("pyyaml")
    assert installed_version("typing-extensions") == installed_version("typing_extensions")


def test_a_distribution_that_is_not_installed_has_none():
    assert installed_version("storyreasoning-no-such-package") is None


def test_a_folder_on_the_path_is_read_first_as_importlib_reads_it(tmp_path, monkeypatch):
    info = tmp_path / "Demo_Pkg-2.5.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 2.5.1\n\nbody\n")
    egg = tmp_path / "old_thing.egg-info"
    egg.write_text("Metadata-Version: 1.0\nName: old-thing\nVersion: 0.3\n")  # an egg-info file
    broken = tmp_path / "broken-1.0.dist-info"
    broken.mkdir()  # no METADATA
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed_version("demo-pkg") == "2.5.1" == version("demo-pkg")
    assert installed_version("old.thing") == "0.3" == version("old-thing")
    assert installed_version("broken") is None


def test_it_does_not_import_importlib_metadata():
    code = (
        "import sys; from storyreasoning.packages import installed_version; "
        "assert installed_version('pycocoevalcap'); print('importlib.metadata' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

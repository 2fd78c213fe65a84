"""File-system and format errors end in one line naming the thing and the fix, whatever the command.

Each class of error is driven through the real CLI: an unreadable dataset folder and an
unreadable ``cot.md`` (permissions), a parquet file damaged in the middle, outputs that
cannot be written (a file in the way, a read-only folder), pyarrow missing, frames that
are text files, unreadable images. The permission tests run as root too: the command is
started without the capabilities that let root read anything (``CAP_DAC_OVERRIDE``,
``CAP_DAC_READ_SEARCH``), so a ``chmod 000`` holds for it as for anyone.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storyreasoning.data import SampleList, write_folders, write_parquet

from .data.fixtures import fixture_samples

pytest.importorskip("pyarrow", reason="needs pyarrow: pip install 'storyreasoning[data]'")
pytest.importorskip("datasets", reason="needs the datasets library: pip install 'storyreasoning[data]'")

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "80", "NO_COLOR": "1"}
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24


def _drop_root_read_override() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run(*args, code: str | None = None, as_user: bool = False) -> subprocess.CompletedProcess:
    """``storyreasoning ARGS`` (or ``python -c CODE``); ``as_user``: file permissions hold even for root."""
    command = (
        [sys.executable, "-c", code] if code else [sys.executable, "-m", "storyreasoning", *map(str, args)]
    )
    preexec = _drop_root_read_override if as_user and os.geteuid() == 0 else None
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=ENV, preexec_fn=preexec, cwd=ROOT
    )


def one_line(result: subprocess.CompletedProcess, *parts: str, code: int = 2) -> str:
    """The command failed with exit ``code`` and one line on stderr holding every part (and no traceback)."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "Errno" not in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    write_folders(fixture_samples(3), root / "stories")
    return root


@pytest.fixture
def unreadable(tmp_path):
    """Make paths unreadable; restored afterwards (so tmp_path can be removed)."""
    made: list[Path] = []

    def make(path: Path) -> Path:
        path.chmod(0)
        made.append(path)
        return path

    yield make
    for path in made:
        path.chmod(0o755)


@pytest.fixture(scope="module")
def permissions_hold():
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"storyreasoning-probe-{os.getpid()}"
    probe.write_text("x")
    probe.chmod(0)
    try:
        result = run(code=f"open({str(probe)!r}).read()", as_user=True)
    except (OSError, subprocess.SubprocessError) as exc:  # no CAP_SETPCAP to drop capabilities
        pytest.skip(f"cannot make a file unreadable for the command here ({exc})")
    finally:
        probe.chmod(0o644)
        probe.unlink()
    if "PermissionError" not in result.stderr:
        pytest.skip("a chmod 000 file stays readable here (a file system that ignores permissions)")


# -- unreadable datasets ----------------------------------------------------------------------------


def test_an_unreadable_dataset_folder(folders, tmp_path, unreadable, permissions_hold):
    dataset = tmp_path / "locked"
    write_folders(fixture_samples(1), dataset)
    unreadable(dataset)
    for args in (
        ("data", "info", dataset),
        ("data", "convert", dataset, tmp_path / "out", "--to", "folder"),
        ("tell-dataset", dataset, "--teller", "baseline", "--out", tmp_path / "run"),
    ):
        one_line(
            run(*args, as_user=True), f"cannot read the dataset at {dataset}", "permission denied", "chmod"
        )


def test_an_unreadable_cot_file(tmp_path, unreadable, permissions_hold):
    dataset = tmp_path / "stories"
    write_folders(fixture_samples(2), dataset)
    cot = unreadable(dataset / "s01" / "cot.md")
    one_line(run("data", "show", dataset, "s01", as_user=True), f"cannot read the story folder file {cot}",
             "permission denied")  # fmt: skip
    # validate names the story it cannot read among its failures and checks the others
    result = run("data", "validate", dataset, "--json", "--failures", tmp_path / "f.jsonl", as_user=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == ["s01"] and report["reasons"] == {"story-unreadable": 1}
    (failure,) = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    message = failure["reasons"][0]["message"]
    assert f"cannot read the story folder file {cot}" in message and "permission denied" in message


# -- damaged parquet -------------------------------------------------------------------------------


def damaged_parquet(root: Path) -> Path:
    """Three stories, one row group each; the middle row group's chain_of_thought overwritten."""
    import pyarrow.parquet as pq

    write_parquet(SampleList(fixture_samples(3)), root, split="train", rows_per_group=1)
    path = next((root / "data").glob("*.parquet"))
    group = pq.ParquetFile(path).metadata.row_group(1)
    names = [group.column(c).path_in_schema for c in range(group.num_columns)]
    column = group.column(names.index("chain_of_thought"))
    data = bytearray(path.read_bytes())
    start = column.data_page_offset + column.total_compressed_size // 3
    data[start : start + column.total_compressed_size // 3] = b"\xff" * (column.total_compressed_size // 3)
    path.write_bytes(bytes(data))
    return path


def test_a_parquet_damaged_in_the_middle(tmp_path):
    path = damaged_parquet(tmp_path / "pq")
    for args in (
        ("data", "info", tmp_path / "pq"),
        ("data", "convert", tmp_path / "pq", tmp_path / "out", "--to", "folder"),
        ("tell-dataset", tmp_path / "pq", "--teller", "baseline", "--out", tmp_path / "run"),
    ):
        one_line(run(*args), f"{path} (row group 2 of 3) is damaged and cannot be read", "export it again")


# -- outputs checked before the work ---------------------------------------------------------------


def test_convert_onto_an_existing_file_is_refused_before_reading(folders, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    for to in ("folder", "parquet", "disk"):
        one_line(run("data", "convert", folders / "stories", target, "--to", to), f"{target} is a file")
    one_line(run("data", "contrastive", folders / "stories", target, "--count", "1"), f"{target} is a file")
    assert target.read_text() == "keep me"
    # the output is checked first: a missing dataset is not even opened
    one_line(run("data", "convert", tmp_path / "missing", target, "--to", "folder"), f"{target} is a file")


def test_an_unwritable_output_folder(folders, tmp_path, permissions_hold):
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        one_line(
            run("data", "convert", folders / "stories", locked / "out", "--to", "parquet", as_user=True),
            f"cannot make the output folder {locked / 'out'} in {locked}",
            "permission denied",
        )
        one_line(
            run("data", "validate", folders / "stories", "--failures", locked / "f.jsonl", as_user=True),
            f"cannot write --failures {locked / 'f.jsonl'} in {locked}",
        )
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


# -- missing optional packages ---------------------------------------------------------------------

WITHOUT_PYARROW = (
    "import sys\n"
    "for name in ('pyarrow', 'pyarrow.parquet', 'datasets'):\n"
    "    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError\n"
    "from storyreasoning.cli import main\n"
    "main({args!r})\n"
)


def test_parquet_without_pyarrow_names_the_extra(tmp_path):
    write_parquet(SampleList(fixture_samples(1)), tmp_path / "pq", split="train")
    for args in (
        ["data", "info", str(tmp_path / "pq")],
        ["data", "convert", "examples/stories", str(tmp_path / "out"), "--to", "parquet"],
    ):
        one_line(run(code=WITHOUT_PYARROW.format(args=args)), "pip install 'storyreasoning[data]'")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_any_missing_extra_is_one_line_naming_it():
    code = (
        "from storyreasoning.cli import app, main\n"
        "@app.command('needs-cv2')\n"
        "def needs_cv2():\n"
        "    raise ModuleNotFoundError(\"No module named 'cv2'\", name='cv2')\n"
        "main(['needs-cv2'])\n"
    )
    one_line(run(code=code), "this needs cv2: pip install 'storyreasoning[vision]'")


# -- frames that are not images --------------------------------------------------------------------


def test_convert_refuses_a_text_file_as_a_frame(tmp_path):
    write_folders(fixture_samples(2), tmp_path / "stories")
    fake = next((tmp_path / "stories" / "s01").glob("02.*"))
    fake.write_text("this is not a frame\n")
    for to in ("parquet", "folder"):
        line = one_line(
            run("data", "convert", tmp_path / "stories", tmp_path / to, "--to", to),
            "story 's01', frame 2:",
            f"{fake} is not a readable image (it holds text, not an image)",
        )
        assert "BytesIO" not in line


def test_an_unreadable_image_is_named_not_its_buffer(tmp_path):
    fake = tmp_path / "frame.jpg"
    fake.write_text("hello world\n")
    line = one_line(run("check", "examples/outputs/lighthouse.txt", fake))
    assert f"{fake} is not a readable image (it holds text, not an image)" in line
    assert "BytesIO" not in line and "0x" not in line


# -- verdicts through the CLI ----------------------------------------------------------------------


def test_check_says_prose_is_not_well_structured(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "storyreasoning", "check", "-"],
        input="hello world\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert result.returncode == 1 and "no-segments" in result.stdout, result.stdout
    text_as_jpg = tmp_path / "story.jpg"
    text_as_jpg.write_text("hello world\n")
    assert run("check", text_as_jpg).returncode == 1


def test_an_empty_path_is_refused_not_taken_for_this_folder():
    """``Path("")`` is ``.``: ``check ''`` said ". is a folder" (and data info read the current folder)."""
    one_line(run("check", ""), "OUTPUT_FILE is an empty path")
    example = ROOT / "examples" / "outputs" / "lighthouse.txt"
    one_line(run("check", example, "--json", ""), "IMAGES is an empty path")


def test_merge_refuses_an_empty_adapter_or_out():
    one_line(run("train", "merge", "", "--out", "x"), "ADAPTER is an empty path")
    one_line(run("train", "merge", "a", "--out", ""), "--out is an empty path")


def test_a_wrong_choice_is_one_line_naming_the_choices():
    """typer's choice error was three lines ("Error: Invalid value … Value error, …")."""
    one_line(
        run("evaluate", "r", "--protocol", "foo"), "--protocol must be one of default, original (got 'foo')"
    )
    one_line(run("build", "x", "--out", "y", "--writer", "foo"), "--writer must be one of template, chat")

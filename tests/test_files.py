"""storyreasoning.files: the one atomic writer. Exact bytes, nothing left behind, the old file kept on failure,
never a torn file under concurrent writers and readers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from storyreasoning.files import (
    LOCK_NAME,
    FolderBusy,
    append_json_line,
    atomic_folder,
    atomic_path,
    lock_folder,
    open_atomic,
    remove_leftovers,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_text_is_written_as_utf8_bytes_exactly(tmp_path):
    path = tmp_path / "story.md"
    assert write_text_atomic(path, "Élise — ça va\nline two\n") == path
    assert path.read_bytes() == "Élise — ça va\nline two\n".encode()
    assert names(tmp_path) == ["story.md"]


def test_text_encoding_and_newline_as_open_does(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "é\n", encoding="latin-1")
    assert (tmp_path / "a.txt").read_bytes() == b"\xe9\n"
    write_text_atomic(tmp_path / "b.txt", "x\ny\n", newline="\r\n")
    assert (tmp_path / "b.txt").read_bytes() == b"x\r\ny\r\n"


def test_bytes_are_written_exactly(tmp_path):
    data = bytes(range(256)) * 3 + b"\r\n\x00"
    write_bytes_atomic(tmp_path / "blob.bin", data, fsync=False)
    assert (tmp_path / "blob.bin").read_bytes() == data
    assert names(tmp_path) == ["blob.bin"]


def test_json_defaults_indent_two_unicode_as_is_final_newline(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"b": "Zoë", "a": [1, 2.5, None, True]})
    assert path.read_bytes() == (
        '{\n  "b": "Zoë",\n  "a": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}\n'.encode()
    )


def test_json_options_give_the_other_callers_bytes(tmp_path):
    path = tmp_path / "fit.json"
    write_json_atomic(path, {"p": Path("/x"), "n": "ü"}, ensure_ascii=True, default=str)
    assert path.read_bytes() == b'{\n  "p": "/x",\n  "n": "\\u00fc"\n}\n'
    write_json_atomic(path, {"z": 1, "a": {"k": 2}}, indent=1, sort_keys=True)
    assert path.read_bytes() == b'{\n "a": {\n  "k": 2\n },\n "z": 1\n}\n'
    write_json_atomic(path, {"a": 1}, indent=None)
    assert path.read_bytes() == b'{"a": 1}\n'
    assert names(tmp_path) == ["fit.json"]


def test_open_atomic_streams_csv_with_its_own_line_ends(tmp_path):
    path = tmp_path / "per_story.csv"
    with open_atomic(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["story_id", "score"])
        writer.writerow(["s1", "0.5"])
        assert not path.exists()  # nothing in place until the block ends
    assert path.read_bytes() == b"story_id,score\r\ns1,0.5\r\n"
    assert names(tmp_path) == ["per_story.csv"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"old\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with open_atomic(path) as f:
            f.write("half of the new" * 1000)
            f.flush()
            assert len(names(tmp_path)) == 2  # the temporary file is there while writing
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old\n"
    assert names(tmp_path) == ["records.jsonl"]


def test_ctrl_c_mid_write_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt):
        with open_atomic(path, "wb") as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    assert names(tmp_path) == []


def test_json_that_cannot_be_encoded_touches_nothing(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"ok": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"ok": 2, "bad": object()})
    with pytest.raises(ValueError):
        _circular(path)  # json's "Circular reference detected"
    assert path.read_bytes() == before
    assert names(tmp_path) == ["summary.json"]


def _circular(path: Path) -> None:
    loop: list = []
    loop.append(loop)
    write_json_atomic(path, loop)


def test_text_that_cannot_be_encoded_keeps_the_old_file(tmp_path):
    path = tmp_path / "card.md"
    path.write_text("old card\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "a lone surrogate \ud800 cannot be UTF-8")
    assert path.read_text(encoding="utf-8") == "old card\n"
    assert names(tmp_path) == ["card.md"]


def test_a_failed_replace_removes_the_temporary(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # a folder cannot be replaced by a file
    with pytest.raises(OSError):
        write_text_atomic(target, "text")
    assert target.is_dir() and names(tmp_path) == ["taken"]


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomic(tmp_path / "no" / "such" / "file.txt", "x")
    assert names(tmp_path) == []


def test_permissions_are_those_of_a_plainly_written_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


def test_a_long_name_still_fits(tmp_path):
    path = tmp_path / ("n" * 250)
    write_text_atomic(path, "ok")
    assert path.read_text(encoding="utf-8") == "ok"
    assert names(tmp_path) == [path.name]


@pytest.mark.parametrize("letter", ["日", "é", "😀", "n"])
def test_the_longest_name_of_any_script_is_written_and_cut_in_bytes_on_a_character(tmp_path, letter):
    """A file name holds 255 bytes, not characters: 85 CJK characters fill it (the temporary's name,
    which kept up to 200 characters of it, was 273 bytes, and the write failed)."""
    name = letter * (255 // len(letter.encode("utf-8")))
    one, two = tmp_path / name, tmp_path / (name[:-1] + "x")  # alike but for the end
    with open_atomic(one) as a, open_atomic(two) as b:
        a.write("one")
        b.write("two")
        temporaries = [n for n in names(tmp_path) if n.endswith(".tmp")]
        assert len(temporaries) == 2
        for tmp in temporaries:
            assert len(tmp.encode("utf-8")) <= 255  # whole characters (a cut one would not encode)
        assert len({tmp.rsplit(".", 2)[0] for tmp in temporaries}) == 2  # each its own prefix
    assert one.read_text(encoding="utf-8") == "one" and two.read_text(encoding="utf-8") == "two"
    assert names(tmp_path) == sorted([one.name, two.name])
    with atomic_folder(tmp_path / "stories" / name) as folder:
        assert len(folder.name.encode("utf-8")) <= 255
        (folder / "cot.md").write_text("cot\n", encoding="utf-8")
    assert names(tmp_path / "stories") == [name] and names(tmp_path / "stories" / name) == ["cot.md"]


def test_atomic_path_for_writers_that_want_a_path(tmp_path):
    path = tmp_path / "shard.parquet"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".shard.parquet.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"PAR1 data PAR1")
        assert not path.exists()
    assert path.read_bytes() == b"PAR1 data PAR1"
    with pytest.raises(ValueError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError("writer failed")
    assert path.read_bytes() == b"PAR1 data PAR1"
    assert names(tmp_path) == ["shard.parquet"]


def test_only_whole_file_modes(tmp_path):
    for mode in ("a", "r+", "x", "w+"):
        with pytest.raises(ValueError, match="whole file"):
            with open_atomic(tmp_path / "f", mode):
                pass
    assert names(tmp_path) == []


def test_concurrent_writers_and_a_reader_never_see_a_torn_file(tmp_path):
    """Six threads rewrite one file with contents of their own (large enough that writes interleave)
    while a reader reads it without pause: every read, and the final file, is one content whole."""
    path = tmp_path / "manifest.json"
    contents = [bytes([65 + k]) * (256 * 1024 + 37 * k) for k in range(6)]
    path.write_bytes(contents[0])
    allowed = set(contents)
    torn: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(k: int) -> None:
        try:
            for _ in range(25):
                write_bytes_atomic(path, contents[k], fsync=k % 2 == 0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        reads = 0
        while not stop.is_set() or reads < 50:
            data = path.read_bytes()
            reads += 1
            if data not in allowed:
                torn.append(len(data))

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(k,)) for k in range(6)]
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert not errors
    assert not torn, f"torn reads of sizes {torn[:5]}"
    assert path.read_bytes() in allowed
    assert names(tmp_path) == ["manifest.json"]


def test_each_write_has_a_temporary_of_its_own(tmp_path):
    """Two writes of one target at once write into different temporary files (one fixed name would
    let the second truncate the first's file under it)."""
    path = tmp_path / "x.json"
    with open_atomic(path) as a, open_atomic(path) as b:
        a.write("first")
        b.write("second")
        assert len(names(tmp_path)) == 2
    assert path.read_text(encoding="utf-8") == "first"  # a ended last (the outer block)
    assert names(tmp_path) == ["x.json"]


def test_the_module_imports_nothing_of_ours():
    """Every layer may use it, the format parser included: it must stay below all of them."""
    import ast

    import storyreasoning.files

    tree = ast.parse(Path(storyreasoning.files.__file__).read_text(encoding="utf-8"))
    ours = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.ImportFrom)
            and (node.level or (node.module or "").startswith("storyreasoning"))
        )
        or (isinstance(node, ast.Import) and any(a.name.startswith("storyreasoning") for a in node.names))
    ]
    assert not ours


KILLED_WRITER = """
import os, sys
from storyreasoning.files import open_atomic
with open_atomic(sys.argv[1], "wb") as f:
    f.write(b"half a shard")
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()  # killed here
"""


def test_a_killed_writer_leaves_a_temporary_that_remove_leftovers_removes(tmp_path):
    path = tmp_path / "train-00000-of-00001.parquet"
    path.write_bytes(b"old")
    (tmp_path / "train-00000-of-00001.parquet.json").write_text("{}")  # a neighbour, kept
    (tmp_path / ".train-00000-of-00001.parquet.notes.tmp").write_text("x")  # not one of ours, kept
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline() == b"writing\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    left = [
        n
        for n in names(tmp_path)
        if n.startswith(".train-00000-of-00001.parquet.") and n != (".train-00000-of-00001.parquet.notes.tmp")
    ]
    assert len(left) == 1 and (tmp_path / left[0]).read_bytes() == b"half a shard"
    assert path.read_bytes() == b"old"  # the kill changed nothing in place
    assert remove_leftovers(path) == 1
    assert names(tmp_path) == [
        ".train-00000-of-00001.parquet.notes.tmp",
        "train-00000-of-00001.parquet",
        "train-00000-of-00001.parquet.json",
    ]
    assert remove_leftovers(path) == 0
    assert remove_leftovers(tmp_path / "missing-folder" / "x") == 0


def test_append_json_line_bytes_and_an_unencodable_record_writes_nothing(tmp_path):
    path = tmp_path / "records.jsonl"
    append_json_line(path, {"story_id": "s1", "text": "Zoë"})
    append_json_line(path, ["x", 1], fsync=False)
    with pytest.raises(TypeError):
        append_json_line(path, {"story_id": "s2", "bad": object()})
    with pytest.raises(UnicodeEncodeError):
        append_json_line(path, {"story_id": "s3", "text": "\ud800"})
    assert path.read_bytes() == '{"story_id": "s1", "text": "Zoë"}\n["x", 1]\n'.encode()


def test_concurrent_appenders_never_mix_their_lines(tmp_path):
    path = tmp_path / "errors.jsonl"
    threads = [
        threading.Thread(
            target=lambda k=k: [
                append_json_line(path, {"w": k, "i": i, "pad": "x" * (9000 + k)}) for i in range(40)
            ]
        )
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted((x["w"], x["i"]) for x in lines) == [(k, i) for k in range(4) for i in range(40)]
    assert all(x["pad"] == "x" * (9000 + x["w"]) for x in lines)


def test_an_append_never_glues_a_record_onto_a_torn_last_line(tmp_path):
    path = tmp_path / "skipped.jsonl"
    path.write_bytes(b'{"story_id": "s00"}\n{"story_id": "s01", "fra')  # a crash cut the last line short
    append_json_line(path, {"story_id": "s02"})
    append_json_line(path, {"story_id": "s03"})
    assert path.read_bytes().split(b"\n") == [
        b'{"story_id": "s00"}',
        b'{"story_id": "s01", "fra',
        b'{"story_id": "s02"}',
        b'{"story_id": "s03"}',
        b"",
    ]  # fmt: skip  (the fragment stays a line of its own, which readers report as damaged)


HOLDER = """
import sys
from storyreasoning.files import lock_folder
with lock_folder(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder`` (until its stdin closes, or it is killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_folder_has_one_writer_and_a_killed_one_frees_it(tmp_path):
    folder = tmp_path / "out"
    holder = hold(folder)
    try:
        with pytest.raises(FolderBusy) as refused, lock_folder(folder):
            pass
        assert str(refused.value) == (
            f"another storyreasoning process (pid {holder.pid}) is writing to {folder}; "
            "wait for it or choose another --out"
        )
        with pytest.raises(ValueError, match=f"pid {holder.pid}"), lock_folder(folder, refuse=ValueError):
            pass  # a command's own error class, so that the line is all it shows
    finally:
        holder.kill()  # no clean-up: the lock goes with the process, the file stays
        holder.wait()
    assert names(folder) == [LOCK_NAME]
    with lock_folder(folder):
        assert (folder / LOCK_NAME).read_text().split() == [str(os.getpid())]
        with lock_folder(folder):  # a library call inside a command holding it: the same holder
            pass
        assert (folder / LOCK_NAME).exists()
    assert names(folder) == []  # let go: the file is gone
    holder = hold(folder)
    holder.stdin.close()  # a holder that ends normally lets go too
    assert holder.wait(timeout=30) == 0
    with lock_folder(folder):
        pass


def test_a_folder_made_for_a_job_that_wrote_nothing_is_removed(tmp_path):
    with pytest.raises(RuntimeError), lock_folder(tmp_path / "runs" / "new"):
        raise RuntimeError("refused before anything was written")
    assert names(tmp_path) == []
    with lock_folder(tmp_path / "runs" / "new") as folder:
        (folder / "manifest.json").write_text("{}")
    assert names(tmp_path / "runs" / "new") == ["manifest.json"]


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "s01"
    stale = tmp_path / ".s01.partial"  # what a writer killed outright left
    stale.mkdir()
    (stale / "half.png").write_bytes(b"half")
    with atomic_folder(target) as tmp:
        assert tmp == stale and names(tmp) == []  # the leftover is gone, the folder fresh
        (tmp / "01.png").write_bytes(b"png")
        (tmp / "cot.md").write_text("cot\n", encoding="utf-8")
        assert not target.exists()
    assert names(target) == ["01.png", "cot.md"] and names(tmp_path) == ["s01"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(tmp_path / "s02") as tmp:
            (tmp / "01.png").write_bytes(b"png")
            raise KeyboardInterrupt
    assert names(tmp_path) == ["s01"]


def test_atomic_folder_makes_the_folders_above(tmp_path):
    with atomic_folder(tmp_path / "runs" / "merged") as tmp:
        (tmp / "config.json").write_text("{}", encoding="utf-8")
    assert names(tmp_path / "runs") == ["merged"] and names(tmp_path / "runs" / "merged") == ["config.json"]


def test_atomic_folder_over_an_existing_one(tmp_path):
    target = tmp_path / "merged"
    target.mkdir()  # an empty folder is taken over
    with atomic_folder(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"new")
    with pytest.raises(OSError):  # a full one only with replace
        with atomic_folder(target) as tmp:
            (tmp / "model.safetensors").write_bytes(b"newer")
    assert (target / "model.safetensors").read_bytes() == b"new" and names(tmp_path) == ["merged"]
    with pytest.raises(RuntimeError):  # a failed replacement keeps the old folder
        with atomic_folder(target, replace=True) as tmp:
            (tmp / "other").write_bytes(b"x")
            raise RuntimeError("save failed")
    assert names(target) == ["model.safetensors"] and names(tmp_path) == ["merged"]
    with atomic_folder(target, replace=True) as tmp:
        (tmp / "other").write_bytes(b"x")
    assert names(target) == ["other"] and names(tmp_path) == ["merged"]


def synced_folders(monkeypatch) -> list[str]:
    """The folders fsync'd from now on, in order (``os.fsync`` watched, then done as ever)."""
    import stat

    synced, fsync = [], os.fsync

    def watched(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", watched)
    return synced


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names a descriptor's file through /proc")
def test_atomic_folder_syncs_the_folder_above_unless_told_not_to(tmp_path, monkeypatch):
    synced = synced_folders(monkeypatch)
    with atomic_folder(tmp_path / "s01") as tmp:
        (tmp / "cot.md").write_text("cot\n", encoding="utf-8")
    assert synced == [str(tmp_path.resolve())]
    with atomic_folder(tmp_path / "s02", sync_parent=False) as tmp:
        (tmp / "cot.md").write_text("cot\n", encoding="utf-8")
    assert synced == [str(tmp_path.resolve())] and names(tmp_path) == ["s01", "s02"]


def test_a_symlink_at_the_locks_name_is_refused_and_its_target_left_alone(tmp_path):
    from storyreasoning.files import LOCK_NAME, FolderBusy, lock_folder

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    with pytest.raises(FolderBusy, match="remove it, or choose another --out"):
        with lock_folder(out):
            pass
    assert precious.read_text() == "keep me"


def test_a_json_object_file_reads_as_its_object_or_as_nothing(tmp_path):
    from storyreasoning.files import read_json_object

    good = tmp_path / "good.json"
    good.write_text('{"settings": {"order": "text-first"}}')
    assert read_json_object(good) == {"settings": {"order": "text-first"}}
    for name, content in (("list.json", b"[1]"), ("bad.json", b"{no"), ("latin.json", b'{"a": "\xff"}')):
        (tmp_path / name).write_bytes(content)
        assert read_json_object(tmp_path / name) == {}, name
    assert read_json_object(tmp_path / "absent.json") == read_json_object(tmp_path) == {}
    assert read_json_object(good, limit=10) == {}  # over its bound: not read whole
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert read_json_object(fifo) == {}  # never waited on

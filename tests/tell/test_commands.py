"""``tell`` and ``tell-dataset`` as a user meets them when things go wrong: an output that cannot
be written, Ctrl-C mid-story, a server that is down, hangs or never finishes.

Real processes (``python -m storyreasoning.cli``), real signals, servers on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from storyreasoning.data import write_folders

from ..conftest import run_cli
from ..data.fixtures import fixture_samples
from .servers import LIGHTHOUSE, FakeServer, closed_url

ENV = {"OPENAI_API_KEY": "", "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli(*map(str, args), env=ENV, timeout=timeout)


# A terminal's Ctrl-C reaches a command whose SIGINT is neither blocked nor ignored; a child of a
# test worker may inherit either (the mask and an ignored disposition survive exec), so the child
# starts from the terminal's state before it runs the command.
AS_FROM_A_TERMINAL = (
    "import runpy, signal, sys; "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'storyreasoning'; "
    "runpy.run_module('storyreasoning.cli', run_name='__main__', alter_sys=True)"
)


def start(*args: str) -> subprocess.Popen:
    """The command running in the background, its output captured, Ctrl-C as from a terminal."""
    return subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, *map(str, args)],
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def error_lines(result) -> list[str]:
    """The errors printed, each as one line (the printer may wrap a long one at the terminal's width)."""
    errors: list[str] = []
    for line in result.stderr.splitlines():
        if line.startswith("error:"):
            errors.append(line)
        elif errors and line.strip():
            errors[-1] += " " + line.strip()
    return errors


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for i in range(2):
        path = folder / f"frame{i + 1}.png"
        Image.new("RGB", (320, 240), (60 * i, 90, 160)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    write_folders(fixture_samples(6), root)
    return root


@pytest.fixture()
def unwritable(tmp_path) -> Path:
    """A folder this process cannot write in (root writes anywhere: then a kernel folder)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except PermissionError:
        yield folder
        folder.chmod(0o700)
        return
    (folder / "probe").unlink()
    folder.chmod(0o700)
    kernel = Path("/sys/kernel")
    try:
        (kernel / "probe").touch()
    except OSError:
        yield kernel
        return
    pytest.skip("no folder here refuses this user's writes")


# -- outputs checked before the story -----------------------------------------------------------


def test_tell_out_onto_a_folder_fails_before_the_story(frames, tmp_path):
    with FakeServer() as server:
        result = cli("tell", *frames, "--endpoint", server.url, "--out", tmp_path)
        assert not server.chat_requests()  # nothing told, nothing lost
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result) == [
        f"error: --out {tmp_path} is a folder; give a file name, e.g. --out {tmp_path / 'story.txt'}"
    ]


def test_tell_out_onto_one_of_its_frames_is_refused_and_the_frame_kept(frames):
    before = frames[1].read_bytes()
    result = cli("tell", *frames, "--teller", "baseline", "--out", frames[1])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result) == [
        f"error: --out {frames[1]} would write over the image {frames[1]}, one of the frames told; "
        f"give another file, e.g. --out {frames[1].with_name('story.txt')}"
    ]
    assert frames[1].read_bytes() == before


def test_tell_out_into_an_unwritable_folder_fails_before_the_story(frames, unwritable):
    out = unwritable / "story.txt"
    with FakeServer() as server:
        result = cli("tell", *frames, "--endpoint", server.url, "--out", out)
        assert not server.chat_requests()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert f"cannot write --out {out}" in line and "choose another --out" in line


def test_tell_dataset_out_onto_a_file_fails_before_any_story(dataset, tmp_path):
    out = tmp_path / "run.txt"
    out.write_text("keep me")
    with FakeServer() as server:
        result = cli("tell-dataset", dataset, "--endpoint", server.url, "--out", out)
        assert not server.chat_requests()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert f"--out {out} is a file" in line
    assert out.read_text() == "keep me"


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_during_a_story_writes_the_partial_output_and_says_where(frames, tmp_path):
    out = tmp_path / "story.txt"
    with FakeServer(chunk=20, piece_delay=0.05) as server:  # the story takes ~6 s
        process = start("tell", *frames, "--endpoint", server.url, "--out", out)
        wait_for(lambda: server.active == 1)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    partial = out.read_text(encoding="utf-8")
    assert partial and len(partial) < len(LIGHTHOUSE) and LIGHTHOUSE.startswith(partial)
    assert "Traceback" not in stderr
    (line,) = error_lines(subprocess.CompletedProcess([], 130, "", stderr))
    assert line == f"error: interrupted; the partial output ({len(partial)} characters) is in {out}"


def test_ctrl_c_without_out_puts_the_partial_output_on_standard_output(frames):
    with FakeServer(chunk=20, piece_delay=0.05) as server:
        process = start("tell", *frames, "--endpoint", server.url, "--json")
        wait_for(lambda: server.active == 1)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    data = json.loads(stdout)
    assert data["partial"] is True and data["raw"] and LIGHTHOUSE.startswith(data["raw"])
    assert "is on standard output" in stderr


@pytest.mark.slow  # heavy end-to-end run: CI runs it in its slow pass
def test_ctrl_c_during_a_run_keeps_the_stories_told_and_the_run_resumes(dataset, tmp_path):
    out = tmp_path / "run"
    records = out / "records.jsonl"
    args = ("tell-dataset", dataset, "--out", out, "--concurrency", "1", "--max-new-tokens", "16")
    with FakeServer(chunk=100, piece_delay=0.05) as server:  # ~1 s a story
        process = start(*args, "--endpoint", server.url)
        wait_for(lambda: records.exists() and len(records.read_bytes().splitlines()) >= 2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        kept = len(records.read_bytes().splitlines())
        assert 2 <= kept < 6
        (line,) = error_lines(subprocess.CompletedProcess([], 130, "", stderr))
        assert (
            line
            == f"error: interrupted; the {kept} stories told are kept in {out}, run the same command again to continue"
        )
        finished = cli(*args, "--endpoint", server.url)
    assert finished.returncode == 0, finished.stderr
    assert f"{kept} already done" in finished.stdout
    counts = Counter(json.loads(line)["story_id"] for line in records.read_text().splitlines())
    assert len(counts) == 6 and set(counts.values()) == {1}


# -- a server that is down, hangs or never finishes ----------------------------------------------


@pytest.mark.parametrize("model", [[], ["--served-model", "m"]], ids=["asked", "named"])
def test_tell_dataset_against_a_dead_server_stops_at_once(dataset, tmp_path, model):
    started = time.perf_counter()
    result = cli(
        "tell-dataset",
        dataset,
        "--endpoint",
        closed_url(),
        *model,
        "--retries",
        "0",
        "--out",
        tmp_path / "run",
    )
    assert time.perf_counter() - started < 30
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert (
        "no server at" in line
        and "nothing was told, run the same command again once the server is up" in line
    )


@pytest.mark.parametrize(("retries", "told"), [([], False), (["--retries", "2"], True)], ids=["default", "2"])
def test_tell_retries_as_many_times_as_asked(frames, tmp_path, retries, told):
    """One story retries once by default (someone is waiting), and as often as --retries says."""
    out = tmp_path / "story.txt"
    with FakeServer("status", status=503, fail=2) as server:  # the first two requests fail
        result = cli("tell", *frames, "--endpoint", server.url, *retries, "--out", out)
        asked = len(server.chat_requests())
    assert "Traceback" not in result.stderr
    if told:
        assert result.returncode == 0, result.stderr
        assert asked == 3 and out.read_text() == LIGHTHOUSE
    else:
        assert result.returncode == 1 and asked == 2 and not out.exists()
        (line,) = error_lines(result)
        assert "gave up after 2 attempts" in line


def test_tell_dataset_against_a_hanging_server_stops_after_a_few_stories(dataset, tmp_path):
    with FakeServer("slow", delay=60) as server:
        result = cli(
            "tell-dataset", dataset, "--endpoint", server.url, "--timeout", "0.5", "--concurrency", "1",
            "--out", tmp_path / "run",
        )  # fmt: skip
        asked = len(server.chat_requests())
    assert result.returncode == 1 and "Traceback" not in result.stderr and asked == 3
    (line,) = error_lines(result)
    assert "stopped after 3 stories in a row failed at the endpoint" in line
    assert "sent nothing for 0.5 seconds" in line and "run the same command again to continue" in line
    assert len((tmp_path / "run" / "errors.jsonl").read_text().splitlines()) == 3


def test_tell_deadline_ends_a_story_that_never_finishes_and_keeps_its_text(frames, tmp_path):
    out = tmp_path / "story.txt"
    with FakeServer("keepalive", drop_after=2, chunk=50, piece_delay=0.2, delay=60) as server:
        started = time.perf_counter()
        result = cli("tell", *frames, "--endpoint", server.url, "--deadline", "1.5", "--out", out)
        took = time.perf_counter() - started
    assert result.returncode == 1 and took < 30, result.stderr
    (line,) = error_lines(result)
    assert "deadline of 1.5 seconds" in line and f"the partial output (100 characters) is in {out}" in line
    assert out.read_text(encoding="utf-8") == LIGHTHOUSE[:100]


# -- wrong options said before any weights load or any server is asked ---------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--max-new-tokens", "-1"), "error: --max-new-tokens must be at least 1 (got -1)"),
        (("--temperature", "-1"), "error: --temperature must be at least 0 (got -1)"),
        (("--top-p", "5"), "error: --top-p must be more than 0 and at most 1 (got 5)"),
        (("--top-p", "0"), "error: --top-p must be more than 0 and at most 1 (got 0)"),
        (("--min-pixels", "-1"), "error: --min-pixels must be at least 1 (got -1)"),
        (("--max-pixels", "0"), "error: --max-pixels must be at least 1 (got 0)"),
        (("--timeout", "0"), "error: --timeout must be more than 0 (got 0)"),
        (("--timeout", "-1"), "error: --timeout must be more than 0 (got -1)"),
        (("--seed", "-1"), "error: --seed must be between 0 and 4294967295 (got -1)"),
    ],
)
@pytest.mark.parametrize("teller", ["baseline", "endpoint", "model"])
def test_sampling_values_out_of_range_are_usage_errors(frames, dataset, tmp_path, option, message, teller):
    """Exit 2, one line; tell-dataset says it before it loads weights (a missing model folder is not
    reached) or asks a server (a closed port is not reached)."""
    chosen = {
        "baseline": ["--teller", "baseline"],
        "endpoint": ["--endpoint", closed_url(), "--retries", "0"],
        "model": ["--model", tmp_path / "no-model-here"],
    }[teller]
    for command in (["tell", *frames], ["tell-dataset", dataset, "--out", tmp_path / "run"]):
        result = cli(*command, *chosen, *option)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert error_lines(result) == [message]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("foo", "error: --device foo is not a device: use auto, cpu, cuda, cuda:N or mps"),
        ("cuda", "error: --device cuda: no CUDA GPU is visible to torch; use --device cpu or auto"),
        ("cuda:1", "error: --device cuda:1: no CUDA GPU is visible to torch; use --device cpu or auto"),
    ],
)
def test_a_device_torch_cannot_use_is_one_line_before_the_weights_load(
    frames, dataset, tmp_path, device, message
):
    pytest.importorskip("torch", reason="local weights need torch")
    for command in (["tell", *frames], ["tell-dataset", dataset, "--out", tmp_path / "run"]):
        result = run_cli(
            *map(str, [*command, "--model", tmp_path / "no-model-here", "--device", device]),
            env={**ENV, "CUDA_VISIBLE_DEVICES": ""},
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert error_lines(result) == [message]


def test_a_config_files_sampling_value_out_of_range_names_its_key(dataset, tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("top_p: 5\n", encoding="utf-8")
    result = cli(
        "tell-dataset", dataset, "--out", tmp_path / "run", "--teller", "baseline", "--config", config
    )
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [f"error: {config}: top_p must be more than 0 and at most 1 (got 5)"]


def test_help_shows_the_range_of_each_number():
    """The bounds an error names are in --help (a range, or in words for an exclusive one)."""
    for command in ("tell", "tell-dataset"):
        shown: dict[str, str] = {}  # each option's help, its wrapped lines joined
        for line in cli(command, "--help").stdout.splitlines():
            if line.strip().startswith("-"):
                flag = next(word for word in line.split() if word.startswith("--")).rstrip(",")
                shown[flag] = line.strip()
            elif shown and line.startswith("   "):
                shown[flag] += " " + line.strip()
        assert "x>=0" in shown["--temperature"]
        assert "More than 0, at most 1." in shown["--top-p"]
        assert "x>=1" in shown["--max-new-tokens"]
        assert "0<=x<=4294967295" in shown["--seed"]
        assert "More than 0." in shown["--timeout"]


@pytest.mark.parametrize("url", ["", " "])
def test_an_empty_endpoint_is_refused_before_any_weights_load(frames, tmp_path, url):
    """``--endpoint "$URL"`` with URL unset was no endpoint, so the 7B model began to download."""
    empty = "error: --endpoint is empty; give the server's base URL (such as http://localhost:8000/v1), or leave it out"
    result = cli("tell", *frames, f"--endpoint={url}")
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [empty]
    result = cli("tell-dataset", tmp_path / "ds", "--out", tmp_path / "run", f"--endpoint={url}")  # a list
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [empty]


def test_an_endpoint_list_of_no_url_is_refused_before_any_weights_load(frames, dataset, tmp_path):
    none = (
        "error: --endpoint names no URL; give the base URL of an OpenAI-compatible server "
        "(http://localhost:8000/v1), or leave it out"
    )
    for command in (["tell", *frames], ["tell-dataset", dataset, "--out", tmp_path / "run"]):
        result = cli(*command, "--endpoint", " , ")
        assert result.returncode == 2, result.stderr
        assert error_lines(result) == [none]


def test_a_run_told_otherwise_names_the_options_to_give_again(dataset, tmp_path):
    out = tmp_path / "run"
    told = cli("tell-dataset", dataset, "--out", out, "--teller", "baseline", "--limit", "1")
    assert told.returncode == 0, told.stderr
    assert f"{out}: 1 story told (1 well-structured)" in " ".join(told.stdout.split())
    for options, said in [
        (("--prompt", "x"), "another prompt (--prompt 'Generate a story based on these images.' then, 'x' now)"),
        (("--temperature", "0.2", "--seed", "3"), "another sampling (--temperature 0.7 then, 0.2 now; --seed unset then, 3 now)"),
        (("--order", "text-first"), "another prompt (--order 'images-first' then, 'text-first' now)"),
    ]:  # fmt: skip
        result = cli("tell-dataset", dataset, "--out", out, "--teller", "baseline", *options)
        assert error_lines(result) == [
            f"error: {out} holds a run with {said}; resume it with the same options or write to another --out "
            "folder"
        ]

"""storyreasoning serve: flags derived from the story length, printed or run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from storyreasoning.errors import UsageError
from storyreasoning.tell.serve import max_model_len, plan

from ..conftest import one_error_line, run_cli


def test_vllm_flags_follow_the_story_length():
    p = plan(
        "daniel3303/QwenStoryteller2", max_images=12, max_pixels=28 * 28 * 1280, server="vllm", port=8011
    )
    args = p.command
    assert args[:3] == ["vllm", "serve", "daniel3303/QwenStoryteller2"]
    assert json.loads(args[args.index("--limit-mm-per-prompt") + 1]) == {"image": 12}
    assert json.loads(args[args.index("--mm-processor-kwargs") + 1]) == {
        "min_pixels": 256 * 28 * 28,
        "max_pixels": 1280 * 28 * 28,
    }
    length = int(args[args.index("--max-model-len") + 1])
    assert length == max_model_len(12, 28 * 28 * 1280, 4096) == 20480  # 12*1280 + 512 + 4096, rounded up
    assert length % 1024 == 0 and length >= 12 * 1280 + 4096
    assert p.endpoint == "http://127.0.0.1:8011/v1"


def test_transformers_serve_when_asked_or_without_vllm():
    p = plan("some/model", server="transformers", host="0.0.0.0", port=9000)
    assert p.command == ["transformers", "serve", "some/model", "--host", "0.0.0.0", "--port", "9000"]
    assert p.endpoint == "http://127.0.0.1:9000/v1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_images": 0}, "max-images"),
        ({"min_pixels": 10, "max_pixels": 5}, "min-pixels"),
        ({"server": "tgi"}, "--server"),
        ({"port": 0}, r"--port must be between 1 and 65535, got 0"),  # the endpoint printed would be :0
        # a context no model serves (it printed --max-model-len 128000000000000000000000)
        ({"server": "vllm", "max_images": 10**20}, r"context of 128,000,000,000,000,000,000,000 tokens"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(UsageError, match=message):
        plan("m", **kwargs)


def test_print_shows_the_command_and_the_endpoint():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storyreasoning",
            "serve",
            "--model",
            "my/model",
            "--server",
            "vllm",
            "--max-images",
            "6",
            "--print",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("vllm serve my/model ")
    assert "--limit-mm-per-prompt '{\"image\": 6}'" in result.stdout
    assert "endpoint: http://127.0.0.1:8000/v1" in result.stderr


def test_a_hub_id_keeps_the_default_pixel_budget():
    """Only a folder a training wrote carries its own budget; a hub id's command is what it always was."""
    for server, expected in [
        ("vllm", "vllm serve daniel3303/QwenStoryteller2 --host 127.0.0.1 --port 8000 --limit-mm-per-prompt "
                 "'{\"image\": 20}' --max-model-len 30720 --mm-processor-kwargs "
                 "'{\"min_pixels\": 200704, \"max_pixels\": 1003520}'\n"),
        ("transformers", "transformers serve daniel3303/QwenStoryteller2 --host 127.0.0.1 --port 8000\n"),
    ]:  # fmt: skip
        result = run_cli("serve", "--model", "daniel3303/QwenStoryteller2", "--server", server, "--print")
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected


def test_serve_runs_the_server_of_an_environment_not_activated(tiny_qwen, tmp_path):
    """``.venv/bin/storyreasoning serve`` with the environment not on PATH: transformers' console script
    is found beside this Python (it said "transformers is not installed"), and the server answers."""
    import os
    import time

    from tests.tell.servers import _models_answer, free_port, require_serve

    require_serve()
    port = free_port()
    env = {**os.environ, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "storyreasoning",
        "serve",
        "--model",
        str(tiny_qwen),
        "--server",
        "transformers",
    ]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _models_answer(f"http://127.0.0.1:{port}") and process.poll() is None:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


@pytest.mark.parametrize("server", ["vllm", "transformers"])
def test_the_endpoint_of_an_ipv6_address_is_a_url_tell_takes(server):
    from storyreasoning.tell.openai import normalize_endpoint

    p = plan("m", server=server, host="::1", port=9000)
    assert p.endpoint == "http://[::1]:9000/v1"
    assert normalize_endpoint(p.endpoint) == p.endpoint


def test_a_port_in_use_is_one_line_before_the_server_starts():
    """Not the server's bind error after it has loaded the model (seconds for transformers, minutes for vLLM)."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_cli("serve", "--model", "my/model", "--server", "transformers", "--port", str(port))
    line = one_error_line(result)
    assert (
        line == f"error: port {port} on 127.0.0.1 is in use (another server?); stop it or pass another --port"
    )


@pytest.mark.parametrize("model", ["", " "])
def test_an_empty_model_is_refused(model):
    """``--model "$MODEL"`` with MODEL unset printed a command serving nothing."""
    result = run_cli("serve", f"--model={model}", "--print")
    assert one_error_line(result) == "error: --model is empty; give a local file or folder, or a hub id"


def test_a_hub_model_that_cannot_be_had_is_one_line_before_the_server_starts():
    """Neither cached nor reachable (offline): it started ``transformers serve``, which printed a traceback of
    some 80 lines and exited."""
    from tests.tell.servers import free_port

    port = str(free_port())
    result = run_cli("serve", "--model", "nobody/no-such-model", "--server", "transformers", "--port", port)
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: nobody/no-such-model is not in the local Hugging Face cache and the hub is off (HF_HUB_OFFLINE is "
        "set); pass a local model folder, or serve on a machine that reaches the hub"
    ]
    assert "serving" not in result.stderr  # the server was never started

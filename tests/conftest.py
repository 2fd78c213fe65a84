"""Fixtures shared by every test suite.

The tests never download anything: ``HF_HUB_OFFLINE`` is set before transformers or
huggingface_hub can be imported, so a stray hub lookup fails fast instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # CI explores a fixed set of examples (reproducible runs); local runs explore new ones each time
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass


def run_cli(
    *args: str, env: dict | None = None, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m storyreasoning.cli ARGS`` in a subprocess: wide, colourless, offline, output captured."""
    full = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "storyreasoning.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a command refused without a traceback (exit 2)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def signal_when(process: subprocess.Popen, ready, sig: int, *, within: float, failure: str,
                timeout: float = 60) -> str:  # fmt: skip
    """Send ``sig`` to ``process`` once ``ready()`` holds and return its stderr; the test fails if the
    process ends first, or (saying ``failure``) when ``within`` seconds pass. The process is killed
    if it is still running when this returns or fails."""
    import time

    try:
        end = time.monotonic() + within
        while not ready():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < end, failure
            time.sleep(0.05)
        process.send_signal(sig)
        return process.communicate(timeout=timeout)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def require_transformers():
    """Skip the calling test unless transformers, tokenizers and torch are importable."""
    reason = "needs the ML stack: pip install 'storyreasoning[train]' (transformers, tokenizers, torch)"
    for module in ("torch", "tokenizers", "transformers"):
        pytest.importorskip(module, reason=reason)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> os.PathLike:
    """A tiny random Qwen2.5-VL folder (built once per session; see ``storyreasoning.testing``).

    Load it with ``AutoProcessor.from_pretrained(tiny_qwen)`` and
    ``Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen)``. Treat it as
    read-only: other tests share it.
    """
    require_transformers()
    from storyreasoning.testing import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"))

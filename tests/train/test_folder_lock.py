"""A training or a pairs build holds its ``--out`` folder: a second one into it meanwhile is refused in
one line naming the first one's pid, before any dataset or weights load."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import one_error_line, run_cli
from ..tell.servers import held_elsewhere

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "stories"


@pytest.mark.parametrize(
    "command",
    [
        ["train", "sft", str(EXAMPLES), "--model", "no/such-model"],
        ["train", "pairs", str(EXAMPLES), "--run", str(EXAMPLES)],
    ],
    ids=["sft", "pairs"],
)
def test_a_second_job_into_a_folder_at_work_is_refused_in_one_line(tmp_path, command):
    out = tmp_path / "out"
    with held_elsewhere(out) as holder:
        line = one_error_line(run_cli(*command, "--out", str(out)))
        assert line == (
            f"error: another storyreasoning process (pid {holder.pid}) is writing to {out}; "
            "wait for it or choose another --out"
        )
        assert sorted(p.name for p in out.iterdir()) == [".storyreasoning.lock"]  # the holder's alone

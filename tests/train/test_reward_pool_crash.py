"""A trainer killed outright (SIGKILL, the out-of-memory killer) leaves no reward worker behind: before, the
forked workers waited for work forever, holding the training folder's lock, so ``train grpo`` into it was
refused ("another storyreasoning process (pid N) is writing to ...", N long dead) until someone killed them.
Ctrl-C, which reaches every process of the terminal's group, stops the trainer alone: the workers printed a
KeyboardInterrupt traceback each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from storyreasoning.files import lock_folder

#: A trainer's process as far as the pool goes: it holds its folder, starts its reward workers, says their pids.
TRAINER = """
import os, sys, time
from storyreasoning.files import lock_folder
from storyreasoning.train.reward import RewardWeights
from storyreasoning.train.reward_pool import RewardPool

try:
    with lock_folder(sys.argv[1]), RewardPool([], RewardWeights(), workers=2) as pool:
        print(*(process.pid for process in pool.executor._processes.values()), flush=True)
        time.sleep(600)
except KeyboardInterrupt:  # as a training stops on Ctrl-C: the pool shut down on the way out
    sys.exit(130)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited orphan nobody reaped yet, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("how", ["SIGKILL", "Ctrl-C"])
def test_a_stopped_trainers_reward_workers_end_quietly_and_free_its_folder(tmp_path, how):
    out = tmp_path / "run"
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    workers: list[int] = []
    try:
        workers = [int(pid) for pid in trainer.stdout.readline().split()]
        assert len(workers) == 2 and trainer.pid not in workers
        if how == "SIGKILL":
            trainer.send_signal(signal.SIGKILL)
        else:  # a terminal's Ctrl-C: SIGINT to every process of its group
            os.killpg(trainer.pid, signal.SIGINT)
        _, stderr = trainer.communicate(timeout=10)
        assert "Traceback" not in stderr, stderr
        deadline = time.monotonic() + 5
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(alive, workers)), "reward workers outlived their trainer"
        with lock_folder(out):  # free: the same command can resume into it
            pass
    finally:
        trainer.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

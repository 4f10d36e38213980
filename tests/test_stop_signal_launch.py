"""Issue 19, item 2 under `accelerate launch`: a stop signal that reaches one process of a launch stops every
process after the same step (the trainer all-reduces the request), with one checkpoint of that step, instead of
leaving the others to wait forever for a collective the stopped one never joins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from test_reliability_training import CHEAP, SRC, TINY

SIGTERM_ON_RANK1 = """
import os, signal, sys
from videoadapt.train.trainer import Trainer
real = Trainer._stop_requested
def stop_requested(self):  # a preemption notice that reaches rank 1 alone, after its 3rd step
    if os.environ.get("RANK") == "1" and self.position.step == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(self)
Trainer._stop_requested = stop_requested
from videoadapt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_on_one_process_stops_the_whole_launch_after_the_same_step(tmp_path):
    """MULTI-PROCESS (about 25 s): 2 CPU processes (gloo); SIGTERM on rank 1 after step 3 of 8. Both processes
    report the stop after step 3, the checkpoint holds step 3, and nothing hangs (a rank stopping alone would
    leave the other blocked in the next step's gradient all-reduce)."""
    script = tmp_path / "sigterm_on_rank1.py"
    script.write_text(SIGTERM_ON_RANK1)
    launcher = Path(sys.executable).with_name("accelerate")
    command = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533", str(script)]
    command += ["train", "--out", str(tmp_path / "run"), *TINY, *CHEAP, "run.max_steps=8", "run.epochs=4"]
    command += ["run.checkpoint_every=1000"]  # only the stop writes a checkpoint before the end
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    # A session of its own, so that a hung launch (the failure this test is for) is stopped with all its ranks.
    launch = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = launch.communicate(timeout=150)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
    assert launch.returncode != 0, "the launch should stop early"
    stopped = "error: training stopped by SIGTERM after step 3: checkpoint"
    assert err.count(stopped) == 2, err[-3000:]  # both processes, the same step
    assert "--resume" in err
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 3 and not (tmp_path / "run" / "metrics.json").exists()

"""`make demo` stopped with SIGTERM (as `timeout`, a scheduler or `kill` stop it): the
running Ray job and the head the demo started stop with it, and no process is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def live(predicate) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and predicate(process):
                found.append(process)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def test_sigterm_stops_the_job_and_the_head(tmp_path):
    run_dir, state = tmp_path / "demo", tmp_path / "ray-state"
    env = {
        **os.environ,
        "IADR1_RAY_STATE": str(state),  # the head this demo starts, recorded apart from any other
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, str(ROOT / "recipes" / "demo.py"), "--run-dir", str(run_dir)]
    command += ["--train-n", "48", "--test-n", "8", "sft.epochs=500", "sft.batch_size=8"]
    demo = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    metrics = run_dir / "pa_sft" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().strip()):  # the PA-SFT job is training
        assert demo.poll() is None and time.monotonic() < deadline, demo.stderr.read()[-2000:]
        time.sleep(0.5)
    head = int((state / "pid").read_text())
    assert live(lambda p: os.getpgid(p.pid) == head)  # the head runs
    assert live(
        lambda p: str(run_dir) in " ".join(p.info["cmdline"] or []) and "pa_sft.py" in " ".join(p.info["cmdline"] or [])
    )

    demo.send_signal(signal.SIGTERM)  # the demo alone, as make forwards it
    assert demo.wait(timeout=180) == 128 + signal.SIGTERM
    assert "stopped cleanly" in demo.stderr.read()
    deadline = time.monotonic() + 30
    while left := (
        live(lambda p: os.getsid(p.pid) == demo.pid)  # the demo's own processes
        + live(lambda p: os.getpgid(p.pid) == head)  # the head's
        + live(lambda p: str(run_dir) in " ".join(p.info["cmdline"] or []))  # the job's driver and actors
    ):
        assert time.monotonic() < deadline, [" ".join(p.info["cmdline"] or [])[:120] for p in left]
        time.sleep(0.5)
    assert not (state / "pid").exists()  # stop-local.sh ran

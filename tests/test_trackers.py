"""Trackers besides JSONL and TensorBoard (`log.to`, `train/trackers.py`).

A 5-step PA-SFT run with `log.to=[mlflow, wandb]` (MLflow's local `file:` store, W&B
offline): the MLflow run holds the run's parameters, each metric's 5 values and the
summary as an artifact; the W&B run folder holds the same parameters and values, read back
from its own record log. A tracker not installed or not reachable stops the run at start,
naming what to do; one that fails mid-run is left behind with a warning; a step redone
after a restart reaches a tracker once.
"""

from __future__ import annotations

import logging
import struct
import sys
from pathlib import Path

import pytest

from iadr1_rl.backends.local.sft import run_sft
from iadr1_rl.train.config import load_config
from iadr1_rl.train.trackers import TrackerError, Trackers


def sft_config(tmp_path: Path, model: Path, records: Path, *extra: str):
    return load_config(
        None,
        [
            f"run_dir={tmp_path}",
            f"model.path={model}",
            f"data.train={records}",
            "data.eval=''",
            f"sft.output={tmp_path / 'sft'}",
            "sft.batch_size=4",
            "sft.epochs=0.83",  # 5 steps of 4 over 24 records
            "sft.lr=1e-3",
            "checkpoint.every=100",
            "resources.torch_threads=1",
            *extra,
        ],
    )


def wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run's log (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("*.wandb")
    data = path.read_bytes()
    block, position, pending, records = 32768, 7, b"", []  # a 7-byte file header, 32 KiB blocks
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_mlflow_and_wandb_get_the_config_every_step_and_the_summary(
    ray_session, tmp_path, tiny_model_dir, synthetic_records, monkeypatch
):
    import mlflow

    monkeypatch.setenv("WANDB_MODE", "offline")
    config = sft_config(tmp_path, tiny_model_dir, synthetic_records, "log.to=[mlflow, wandb]", "log.project=trackers")
    run_sft(config, progress=False, run_eval=False)
    out = tmp_path / "sft"
    steps = [1, 2, 3, 4, 5]

    client = mlflow.tracking.MlflowClient((out / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("trackers").experiment_id])
    assert run.data.params["sft.lr"] == "0.001" and run.data.params["model.path"] == str(tiny_model_dir)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == steps and len({m.value for m in history}) > 1
    assert run.info.status == "FINISHED"
    assert "summary.json" in [a.path for a in client.list_artifacts(run.info.run_id)]

    (folder,) = (out / "wandb").glob("offline-run-*")
    records = wandb_records(folder)
    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    params = {item.key: item.value_json for item in started.config.update}
    assert params["sft.lr"] == "0.001" and started.project == "trackers"
    rows = [
        {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]
    assert [int(row["_step"]) for row in rows] == steps
    assert [float(row["loss"]) for row in rows] == pytest.approx([m.value for m in history])


def test_a_tracker_that_cannot_start_stops_the_run_before_it_trains(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(
        TrackerError, match=r"log\.to names wandb, which is not installed: pip install -e '\.\[wandb\]'"
    ):
        Trackers.open(["wandb"], tmp_path, {}, "p", None)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(TrackerError, match=r"mlflow, which cannot reach http://127\.0\.0\.1:9 \(log\.mlflow_uri\)"):
        Trackers.open(["mlflow"], tmp_path, {}, "p", "http://127.0.0.1:9")


class Flaky:
    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.steps, self.finished = fail_at, [], None

    def log(self, step, metrics):
        if step == self.fail_at:
            raise ConnectionError("the tracking server went away")
        self.steps.append(step)

    def event(self, step, kind, fields):
        self.steps.append((kind, step))

    def artifacts(self, paths):
        pass

    def finish(self, failed=False):
        self.finished = failed


def test_a_tracker_that_fails_mid_run_is_left_behind_and_redone_steps_arrive_once(caplog):
    steady, flaky = Flaky(), Flaky(fail_at=3)
    trackers = Trackers({"steady": steady, "flaky": flaky})
    with caplog.at_level(logging.WARNING, logger="iadr1_rl.train.trackers"):
        for step in (1, 2, 3, 4):
            trackers.log(step, {"loss": 1.0})
        trackers.event(3, "run_restart", {"lost": "policy rank 0"})
        for step in (4, 5):  # redone after a restart from the step-3 checkpoint
            trackers.log(step, {"loss": 1.0})
    assert steady.steps == [1, 2, 3, 4, ("run_restart", 3), 5]
    assert flaky.steps == [1, 2] and list(trackers.trackers) == ["steady"]
    assert "flaky failed to log a step (the tracking server went away)" in caplog.text
    trackers.finish()
    assert steady.finished is False and flaky.finished is None

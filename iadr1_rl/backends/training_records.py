"""The records a training run reads, as both backends load them: the file a config key
names, shaped for `data.shots`, with a clear error for a missing file, an empty one or
missing targets."""

from __future__ import annotations

from pathlib import Path

from ..data.records import MAKE_RECORDS, Record, load_records, shape_for_shots


def training_records(path: str, shots: int, need_response: bool, key: str = "data.train") -> list[Record]:
    """The training records (named by config `key`), shaped for `data.shots` (0: the query
    image only), with a clear error for a missing file, an empty one or missing targets."""
    hint = f"{MAKE_RECORDS}; then set {key}=DIR/records.jsonl"
    if not path:
        raise ValueError(f"{key} is not set in the config: {hint}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"training records not found: {path} ({key}); {hint}")
    records = load_records(path)
    if not records:
        raise ValueError(f"no records in {path}")
    if need_response:
        missing = [r.id for r in records if not r.response]
        if missing:
            raise ValueError(f"PA-SFT needs a 'response' on every record; {len(missing)} lack one (e.g. {missing[0]})")
    return shape_for_shots(records, shots, path)

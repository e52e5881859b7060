"""Generate answers for a test set with any checkpoint, resumable.

Writes one line per sample `{"id", "dataset", "label", "output"}`. A run that is
interrupted resumes where it stopped: finished ids are skipped, and a last line cut
short by a crash is dropped before appending.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from ..data.converters import from_mmad
from ..data.records import Record, iter_records, shape_for_shots
from ..models.generation import SamplingConfig, generate_texts

logger = logging.getLogger(__name__)


def load_test_set(data: str | Path, shots: int, image_root: str | Path | None = None) -> list[Record]:
    """Records from a records JSONL or an MMAD question JSON, shaped for 0 or 1 shot."""
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"test data not found: {data}")
    if data.suffix == ".json":
        records = list(from_mmad(data, image_root, shots))
    else:
        records = shape_for_shots(list(iter_records(data)), shots, data)
    missing = [p for r in records for p in r.images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images not found, e.g. {missing[0]}")
    return records


def finished_ids(out: Path) -> set[str]:
    """Ids already written; truncates a last line that a crash cut short."""
    if not out.is_file():
        return set()
    done, good_bytes = set(), 0
    with out.open("rb") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
                logger.warning("dropping an incomplete line at the end of %s", out)
                break
            good_bytes += len(line)
    with out.open("rb+") as handle:
        handle.truncate(good_bytes)
    return done


def _batches(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


Generate = Callable[[list[Record]], list[str]]


def run_generation(
    model_dir: str | Path,
    records: list[Record],
    out: str | Path,
    family: str = "iad_r1",
    batch_size: int = 8,
    sampling: SamplingConfig = SamplingConfig(),
    dtype: str = "float32",
    device: str = "cpu",
    backend: str = "hf",
    progress: bool = True,
    generate: Generate | None = None,
) -> int:
    """Generate for the records not yet in `out`; returns how many were generated now.
    `generate` (a batch of records to one completion each) replaces the `backend` on
    `device` of this process (a training run's evaluation generates in a Ray actor)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(out)
    todo = [r for r in records if r.id not in done]
    if done:
        logger.info("resuming: %d of %d already in %s", len(done), len(records), out)
    if not todo:
        return 0
    if generate is not None:
        pass
    elif backend == "vllm":
        from .vllm_backend import VLLMGenerator

        generate = VLLMGenerator(model_dir, family, sampling, dtype, device=device).generate
    elif backend == "hf":
        from ..models.loading import load_vlm

        model, processor = load_vlm(model_dir, dtype=dtype, device=device)

        def generate(batch: list[Record]) -> list[str]:
            return generate_texts(model, processor, batch, family, sampling)
    else:
        raise ValueError(f"backend must be 'hf' or 'vllm', got {backend!r}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="generating", unit=" samples")
    with out.open("a", encoding="utf-8") as handle:
        for batch in _batches(todo, batch_size):
            for record, output in zip(batch, generate(batch)):
                row = {"id": record.id, "dataset": record.dataset, "label": record.label, "output": output}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()  # a finished batch is never lost
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    return len(todo)

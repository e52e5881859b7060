"""Records: the one format, read and written; `iadr1-data validate` reports every problem."""

import json

import pytest

from iadr1_rl.data.cli import main as data_main
from iadr1_rl.data.records import Record, RecordError, iter_records, write_records
from iadr1_rl.data.validate import validate_file


def make_png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (28, 28), (100, 100, 100)).save(path)
    return path


def test_round_trip_keeps_paths_relative(tmp_path):
    image = make_png(tmp_path / "imgs" / "a.png")
    record = Record("a", [str(image)], {"answer": "yes", "cells": [1], "type": "scratch"}, response="<think>x</think>")
    write_records([record], tmp_path / "data" / "records.jsonl")
    row = json.loads((tmp_path / "data" / "records.jsonl").read_text())
    assert row["images"] == ["../imgs/a.png"]
    (loaded,) = iter_records(tmp_path / "data" / "records.jsonl")
    assert loaded.images == [str(image)]  # resolved and normalised
    assert loaded.label == record.label and loaded.response == record.response


BAD_ROWS = [
    # (row, words of the error)
    ({"images": ["a.png"], "label": {"answer": "no"}}, "missing 'id'"),
    ({"id": 1, "images": [], "label": {"answer": "no"}}, "non-empty list"),
    ({"id": 1, "images": ["a", "b", "c"], "label": {"answer": "no"}}, "[query] or [reference, query]"),
    ({"id": 1, "images": ["a"], "label": {"answer": "maybe"}}, "label.answer"),
    ({"id": 1, "images": ["a"], "label": "yes"}, "'label' must be an object"),
    ({"id": 1, "images": ["a"], "label": {"answer": "no"}, "response": 3}, "'response' must be text"),
]


@pytest.mark.parametrize(("row", "words"), BAD_ROWS)
def test_bad_rows_name_file_and_line(tmp_path, row, words):
    path = tmp_path / "r.jsonl"
    good = {"id": "ok", "images": ["a"], "label": {"answer": "no"}}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(RecordError) as error:
        list(iter_records(path))
    assert error.value.line == 2 and words in str(error.value) and "r.jsonl:2" in str(error.value)


def test_validate_reports_every_problem_with_line_numbers(tmp_path, capsys):
    make_png(tmp_path / "ok.png")
    rows = [
        {"id": "1", "images": ["ok.png"], "label": {"answer": "no"}, "response": "<think>t</think><answer>no</answer>"},
        {"id": "2", "images": ["missing.png"], "label": {"answer": "no"}},
        "not json",
        {
            "id": "4",
            "images": ["ok.png"],
            "label": {"answer": "yes", "cells": [1]},
            "response": "<think>t</think><answer>no</answer>",
        },
        {"id": "5", "images": ["ok.png"], "label": {"answer": "yes", "cells": [12]}},
        {"id": "1", "images": ["ok.png"], "label": {"answer": "yes", "location": "somewhere"}},
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    count, problems = validate_file(path)
    found = {(p.line, p.message.split(":")[0]) for p in problems}
    assert count == 6
    assert (2, "image not found") in found
    assert (3, "invalid JSON (Expecting value)") in found
    assert any(line == 4 and "tag pattern" in m for line, m in found)
    assert any(line == 4 and "response answers 'no'" in p.message for p in problems for line in [p.line])
    assert any(p.line == 5 and "outside a 3x3 grid" in p.message for p in problems)
    assert any(p.line == 6 and "already used on line 1" in p.message for p in problems)
    assert any(p.line == 6 and "without a location" in p.message and p.level == "warning" for p in problems)
    assert all(p.level == "error" for p in problems if "without a location" not in p.message)
    assert not any(p.line == 1 for p in problems)
    assert data_main(["validate", str(path)]) == 1
    assert "6 records" in capsys.readouterr().out


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_warnings_pass_unless_strict(tmp_path, capsys):
    make_png(tmp_path / "ok.png")
    rows = [
        {"id": "1", "images": ["ok.png"], "label": {"answer": "yes", "cells": [1], "type": "crack"}},
        {"id": "2", "images": ["ok.png"], "label": {"answer": "yes", "type": "crack"}},  # no location: a warning
    ]
    path = write_rows(tmp_path / "records.jsonl", rows)
    assert data_main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: line 2: anomalous label without a location" in out and "0 errors, 1 warnings" in out
    assert data_main(["validate", "--strict", str(path)]) == 1


def test_a_dataset_without_masks_gets_one_note(tmp_path, capsys):
    """MMAD has no masks: every anomalous record lacks a location, which is one fact about
    the dataset, not 54 problems."""
    make_png(tmp_path / "ok.png")
    rows = [{"id": str(i), "images": ["ok.png"], "label": {"answer": "yes", "type": "crack"}} for i in range(5)]
    rows.append({"id": "n", "images": ["ok.png"], "label": {"answer": "no"}})
    count, problems = validate_file(write_rows(tmp_path / "records.jsonl", rows))
    assert count == 6 and len(problems) == 1
    assert (
        problems[0].level == "warning"
        and "without masks" in problems[0].message
        and "5 anomalous" in problems[0].message
    )
    assert data_main(["validate", str(tmp_path / "records.jsonl")]) == 0
    assert "without masks" in capsys.readouterr().out

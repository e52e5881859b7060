"""The visual evaluation report: structure of the page (one embedded image per item, the
parts, the filters), what the picture shows (the scorer's cells), the outcome of each
item, and a --limit sample that keeps every outcome."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import pytest
from PIL import Image

from iadr1_rl.data.records import load_records
from iadr1_rl.eval.cli import main as eval_main
from iadr1_rl.eval.grid_image import LABEL_COLOUR, PREDICTED_COLOUR, cell_box, draw_cells
from iadr1_rl.eval.html_report import build_items, records_by_id, write_html_report
from iadr1_rl.eval.outcomes import FLAWS, OUTCOMES, ReportItem, outcome_of, sample_items
from rewards import Scorer


class Page(HTMLParser):
    """The parts of the page the tests look at: items (class, images, parts) and filters."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.items: list[dict] = []
        self.filters: list[str] = []
        self.external: list[str] = []
        self._in_th = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "item" in attrs.get("class", "").split():
            self.items.append({"classes": set(attrs["class"].split()), "images": [], "parts": []})
        elif tag == "img" and self.items:
            self.items[-1]["images"].append(attrs["src"])
        elif tag == "button" and "data-filter" in attrs:
            self.filters.append(attrs["data-filter"])
        elif tag == "th":
            self._in_th = True
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith(("data:", "#")):
                self.external.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th and self.items and data.strip():
            self.items[-1]["parts"].append(data.strip())


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def spoil(record, kind: str) -> str:
    """A completion for `record` with one known fault."""
    response = record.response
    if kind == "flip":
        return (
            response.replace("<answer>yes</answer>", "<answer>NO</answer>")
            .replace("<answer>no</answer>", "<answer>yes</answer>")
            .replace("NO", "no")
        )
    if kind == "wrong-cell":
        return response.replace(f"<location>{record.label['location']}</location>", "<location>bottom right</location>")
    if kind == "wrong-type":
        return response.replace(f"<type>{record.label['type']}</type>", "<type>wobbly wibble</type>")
    if kind == "broken":
        return response.replace("</think>", "")
    if kind == "none":
        return "I cannot tell."
    return response


@pytest.fixture(scope="module")
def predictions(synthetic_records, tmp_path_factory):
    """Predictions over the synthetic records with every outcome: right, flipped answers,
    a wrong location, a wrong type, a broken format and no answer at all."""
    records = load_records(synthetic_records)
    anomalous = [r for r in records if r.answer == "yes" and r.label["cells"] and r.label["location"] != "bottom right"]
    normal = [r for r in records if r.answer == "no"]
    faults = {
        anomalous[0].id: "flip",
        normal[0].id: "flip",
        anomalous[1].id: "wrong-cell",
        anomalous[2].id: "wrong-type",
        anomalous[3].id: "broken",
        normal[1].id: "none",
    }
    path = tmp_path_factory.mktemp("report") / "predictions.jsonl"
    rows = [
        {"id": r.id, "dataset": r.dataset, "label": r.label, "output": spoil(r, faults.get(r.id, "keep"))}
        for r in records
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, faults, records


EXPECTED = {
    "flip-yes": {"fn"},
    "flip-no": {"fp"},
    "wrong-cell": {"tp", "location-wrong"},
    "wrong-type": {"tp", "type-wrong"},
    "broken": {"tp", "format-broken"},
    "none": {"no-answer", "format-broken"},
}


def test_each_item_gets_its_outcome(predictions):
    path, faults, records = predictions
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    items = {item.id: item for item in build_items(rows, records_by_id(records), Scorer())}
    for record in records:
        fault = faults.get(record.id)
        if fault == "flip":
            fault = f"flip-{record.answer}"
        expected = EXPECTED.get(fault, {"tp" if record.answer == "yes" else "tn"})
        assert set(items[record.id].keys) == expected, (record.id, fault, items[record.id].keys)


def test_the_page_has_one_image_per_item_the_parts_and_every_filter(predictions, tmp_path):
    path, _faults, records = predictions
    out = write_html_report(path, records, tmp_path / "report.html")
    page = Page(out.read_text())
    assert len(page.items) == len(records)
    assert all(len(item["images"]) == 1 for item in page.items)
    assert all(item["parts"][:5] == ["consistency", "accuracy", "location", "type", "total"] for item in page.items)
    assert page.filters == ["all", *OUTCOMES, *FLAWS]
    assert page.external == []  # self-contained: nothing to fetch
    for expected in EXPECTED.values():
        assert any(expected <= item["classes"] for item in page.items), expected
    text = out.read_text()
    for key in (*OUTCOMES, *FLAWS):  # each filter hides what it does not select, in CSS
        assert f'body[data-filter="{key}"] .item:not(.{key}){{display:none}}' in text


def test_the_header_summarises_every_item(predictions, tmp_path):
    path, _, records = predictions
    text = write_html_report(path, records, tmp_path / "report.html", limit=8).read_text()
    scorer = Scorer()
    assert f"scorer {scorer.digest}" in text
    assert f"showing 8 of {len(records)} items" in text
    n_yes = sum(r.answer == "yes" for r in records)
    # The confusion table counts all items, not only the eight shown: one anomaly was flipped to no.
    assert f"<tr><th>label yes</th><td>{n_yes - 1}</td><td>1</td><td>0</td></tr>" in text


def test_the_picture_marks_the_label_and_predicted_cells():
    image = Image.new("RGB", (192, 192), (60, 60, 60))
    drawn = draw_cells(image, (3, 3), label_cells={1}, predicted_cells={9})

    def colours(cell):
        left, top, right, bottom = cell_box(cell, (3, 3), drawn.size)
        return {drawn.getpixel((x, y)) for x in range(left, right) for y in range(top, bottom)}

    def near(colour, target, tolerance=40):
        return all(abs(a - b) <= tolerance for a, b in zip(colour, target))

    assert any(near(c, LABEL_COLOUR) for c in colours(1))
    assert not any(near(c, PREDICTED_COLOUR) for c in colours(1))
    assert any(near(c, PREDICTED_COLOUR) for c in colours(9))
    assert not any(near(c, LABEL_COLOUR) for c in colours(9))
    assert not any(near(c, LABEL_COLOUR) or near(c, PREDICTED_COLOUR) for c in colours(5))


def test_the_embedded_picture_is_the_scored_cells(predictions, tmp_path):
    """The wrong-location item's picture has magenta in the bottom-right cell (what the
    scorer mapped "bottom right" to), and the label's cell outlined in green."""
    _path, faults, records = predictions
    wrong = next(r for r in records if faults.get(r.id) == "wrong-cell")
    row = {"id": wrong.id, "dataset": wrong.dataset, "label": wrong.label, "output": spoil(wrong, "wrong-cell")}
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(row) + "\n")
    page = Page(write_html_report(single, records, tmp_path / "one.html").read_text())
    picture = decode(page.items[0]["images"][0])
    magenta = [
        (x, y)
        for x in range(picture.width)
        for y in range(picture.height)
        if abs(picture.getpixel((x, y))[0] - 255) < 50
        and picture.getpixel((x, y))[1] < 80
        and picture.getpixel((x, y))[2] > 120
    ]
    left, top, _, _ = cell_box(9, (3, 3), picture.size)
    assert magenta and all(x >= left - 2 and y >= top - 2 for x, y in magenta)


def item(outcome: str, flaws=()) -> ReportItem:
    return ReportItem(
        id=outcome,
        dataset="d",
        label={},
        output="",
        score=None,
        predicted=None,
        metrics={},
        outcome=outcome,
        flaws=list(flaws),
    )


@pytest.mark.parametrize("limit", [1, 5, 8, 20, 99])
def test_a_sample_keeps_every_outcome_and_the_order(limit):
    items = [item("tp") for _ in range(300)] + [item("tn") for _ in range(300)]
    items += [item("fp"), item("fn"), item("no-answer"), item("tp", ["location-wrong"]), item("tp", ["type-wrong"])]
    items += [item("tn", ["format-broken"])]
    for index, each in enumerate(items):
        each.id = str(index)
    sample = sample_items(items, limit)
    assert len(sample) == limit
    assert [int(s.id) for s in sample] == sorted(int(s.id) for s in sample)
    kinds = {key for s in sample for key in s.keys}
    assert len(kinds) == min(limit, 8) or kinds == set(OUTCOMES) | set(FLAWS)
    if limit >= 8:
        assert kinds == set(OUTCOMES) | set(FLAWS)
    if limit == 99:  # the rest in proportion: about as many TP as TN
        counts = [sum(s.outcome == o for s in sample) for o in ("tp", "tn")]
        assert abs(counts[0] - counts[1]) <= 4


def test_outcomes():
    assert [outcome_of(g, p) for g, p in [("yes", "yes"), ("yes", "no"), ("no", "no"), ("no", "yes")]] == [
        "tp",
        "fn",
        "tn",
        "fp",
    ]
    assert outcome_of("no", None) == "no-answer"


def test_the_cli_writes_the_page_and_names_a_wrong_records_file(predictions, tmp_path, capsys):
    path, _, _ = predictions
    records_file = next(path.parent.parent.glob("synthetic*/records.jsonl"))
    assert eval_main(["report", str(path), "--data", str(records_file), "--out", str(tmp_path / "r.html")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "r.html").stat().st_size > 10_000
    other = tmp_path / "other.jsonl"
    other.write_text(records_file.read_text().replace('"id": "', '"id": "x'))
    assert eval_main(["report", str(path), "--data", str(other), "--out", str(tmp_path / "x.html")]) == 2
    assert "have no record with their id" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_an_mmad_file_as_data_with_its_image_root(tmp_path, capsys):
    """MMAD predictions (ids are image paths) over the MMAD question file, images elsewhere."""
    root = tmp_path / "MMAD"
    (root / "DS" / "bottle" / "test" / "crack").mkdir(parents=True)
    Image.new("RGB", (64, 64), (90, 90, 90)).save(root / "DS" / "bottle" / "test" / "crack" / "000.png")
    key = "DS/bottle/test/crack/000.png"
    question = {"Question": "Is there any defect in the object?", "Answer": "A", "Options": {"A": "Yes.", "B": "No."}}
    mmad = tmp_path / "questions" / "test_DS_format.json"
    mmad.parent.mkdir()
    mmad.write_text(json.dumps({key: {"image_path": key, "conversation": [question]}}))
    label = {"answer": "yes", "location": "", "cells": [], "type": "crack", "dataset": "DS"}
    row = {"id": key, "dataset": "DS", "label": label, "output": "<think>t</think><answer>yes</answer>"}
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps(row) + "\n")
    out = tmp_path / "mmad.html"
    args = ["report", str(predictions), "--data", str(mmad), "--out", str(out), "--image-root", str(root)]
    assert eval_main(args) == 0
    text = out.read_text()
    assert "image not" not in text  # found under --image-root
    assert eval_main([*args[:-2]]) == 0  # without it, the page still comes, saying so
    assert f"image not found: {mmad.parent / key}" in out.read_text()

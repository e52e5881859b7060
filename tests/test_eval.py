"""Evaluation: answer extraction, balanced accuracy against hand-computed confusion
tables, reports, and resumable generation with a real (tiny) model."""

import json

import pytest

from iadr1_rl.eval.answers import extract_prediction
from iadr1_rl.eval.cli import main as eval_main
from iadr1_rl.eval.metrics import score_predictions

EXTRACTION = [
    # (output, format, answer)
    ("<think>t</think><answer>yes</answer>", "tags", "yes"),
    ("<think>t</think><answer>No.</answer>", "tags", "no"),
    ("Yes, there is a scratch.", "tags", None),  # an IAD-R1 model must use its tags
    ("<answer>maybe</answer>", "tags", None),
    ("Yes, there is a scratch.", "plain", "yes"),
    ("no", "plain", "no"),
    ("A", "plain", "yes"),  # MMAD option letters: A = Yes
    ("B. No.", "plain", "no"),
    ("(A) Yes.", "plain", "yes"),
    ("Answer: B", "plain", "no"),
    ("<answer>yes</answer>", "plain", "yes"),  # tags are read in plain mode too
    ("Bright spots are visible", "plain", None),  # `Bright` is not the letter B
    ("I am not sure", "plain", None),
    ("", "plain", None),
]


@pytest.mark.parametrize(("output", "fmt", "answer"), EXTRACTION)
def test_extract_prediction(output, fmt, answer):
    assert extract_prediction(output, fmt) == answer


def test_balanced_accuracy_hand_computed():
    # Dataset A: 4 normal (3 answered no, 1 yes), 6 anomalous (4 yes, 1 no, 1 unparsed).
    rows = [("A", "no", "no")] * 3 + [("A", "no", "yes")] + [("A", "yes", "yes")] * 4
    rows += [("A", "yes", "no"), ("A", "yes", None)]
    # Dataset B: 2 normal both right, 2 anomalous both right.
    rows += [("B", "no", "no")] * 2 + [("B", "yes", "yes")] * 2
    report = score_predictions(rows)
    a = report["datasets"]["A"]
    assert a["normal_accuracy"] == 0.75 and a["anomaly_accuracy"] == pytest.approx(4 / 6)
    assert a["balanced_accuracy"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert a["overkill"] == 0.25 and a["miss"] == pytest.approx(1 / 6)
    assert (a["n"], a["n_normal"], a["n_anomalous"], a["unparsed"]) == (10, 4, 6, 1)
    assert report["datasets"]["B"]["balanced_accuracy"] == 1.0
    assert report["average_balanced_accuracy"] == pytest.approx(((0.75 + 4 / 6) / 2 + 1.0) / 2)


def test_dataset_without_normal_items_says_so():
    rows = [("DTD", "yes", "yes"), ("DTD", "yes", "no"), ("SDD", "no", "no"), ("SDD", "yes", "yes")]
    report = score_predictions(rows)
    dtd = report["datasets"]["DTD"]
    assert dtd["balanced_accuracy"] is None and dtd["normal_accuracy"] is None and dtd["overkill"] is None
    assert dtd["anomaly_accuracy"] == 0.5 and "no normal items" in dtd["note"]
    assert report["average_balanced_accuracy"] == 1.0  # only datasets where it is defined


def test_bad_label_is_named():
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        score_predictions([("X", "perhaps", "yes")])


def test_score_cli_writes_json_csv_png(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": "1", "dataset": "MVTec", "label": {"answer": "yes"}, "output": "<answer>yes</answer>"},
        {"id": "2", "dataset": "MVTec", "label": {"answer": "no"}, "output": "<answer>yes</answer>"},
        {"id": "3", "dataset": "MVTec", "label": {"answer": "no"}, "output": "garbage"},
    ]
    preds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "report" / "eval.json"
    assert eval_main(["score", str(preds), "--json", str(out), "--backbone", "qwen2_5_vl_3b"]) == 0
    report = json.loads(out.read_text())
    assert report["datasets"]["MVTec"]["balanced_accuracy"] == 0.5
    assert report["datasets"]["MVTec"]["unparsed"] == 1
    assert out.with_suffix(".csv").read_text().splitlines()[1].startswith("MVTec,0.5,")
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MVTec" in capsys.readouterr().out


def run_args(model, data, out, *options: str) -> list[str]:
    """`iadr1-eval run` arguments: model folder, records, predictions file, then options."""
    return ["run", "--model", str(model), "--data", str(data), "--out", str(out), *options]


def test_run_resumes_without_redoing(tmp_path, tiny_model_dir, synthetic_records, monkeypatch):
    from iadr1_rl.eval import generate

    out = tmp_path / "preds.jsonl"
    args = ["-q", *run_args(tiny_model_dir, synthetic_records, out, "--max-new-tokens", "3", "--batch-size", "4")]
    assert eval_main([*args, "--limit", "8"]) == 0
    first = out.read_text().splitlines()
    assert len(first) == 8
    # A crash mid-write leaves half a line: it is dropped, finished lines are kept.
    out.write_text("\n".join(first) + '\n{"id": "synth-cut')
    generated = []
    original = generate.generate_texts

    def counting(model, processor, batch, family, sampling):
        generated.extend(r.id for r in batch)
        return original(model, processor, batch, family, sampling)

    monkeypatch.setattr(generate, "generate_texts", counting)
    assert eval_main(args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [row["id"] for row in lines]
    assert len(ids) == len(set(ids)) == 24
    assert len(generated) == 16 and not set(generated) & {json.loads(line)["id"] for line in first}
    assert set(lines[0]) == {"id", "dataset", "label", "output"}
    assert eval_main(["score", str(out), "--json", str(tmp_path / "eval.json")]) == 0


def test_run_one_shot_needs_references(tmp_path, tiny_model_dir, synthetic_records, capsys):
    zero_shot = tmp_path / "zero.jsonl"
    rows = [json.loads(line) for line in synthetic_records.read_text().splitlines()]
    for row in rows:
        row["images"] = [str((synthetic_records.parent / row["images"][-1]).resolve())]
    zero_shot.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = eval_main(run_args(tiny_model_dir, zero_shot, tmp_path / "p.jsonl", "--shots", "1"))
    assert code == 2 and "1-shot needs a reference image" in capsys.readouterr().err
    code = eval_main(run_args(tmp_path / "nope", zero_shot, tmp_path / "p"))
    assert code == 2 and "model folder not found" in capsys.readouterr().err


def test_run_one_shot_generates_with_two_images(tmp_path, tiny_model_dir, synthetic_records):
    out = tmp_path / "one.jsonl"
    options = ("--shots", "1", "--max-new-tokens", "2", "--limit", "4")
    assert eval_main(["-q", *run_args(tiny_model_dir, synthetic_records, out, *options)]) == 0
    assert len(out.read_text().splitlines()) == 4

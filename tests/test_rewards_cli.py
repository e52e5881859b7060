"""`iadr1-score`: scores a JSONL file, prints a summary, reports malformed lines."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewards.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = "<think>t</think><location>top left</location><type>scratch</type><answer>yes</answer>"


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_file_and_prints_summary(tmp_path, capsys):
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"completion": GOOD, "label": {"answer": "yes", "location": "top left", "type": "scratch"}}),
            json.dumps({"completion": "<think>t</think><answer>no</answer>", "label": {"answer": "no"}}),
            json.dumps({"completion": "nothing", "label": {"answer": "no"}, "id": 7}),
        ],
    )
    out = tmp_path / "out.jsonl"
    assert main([str(source), "-o", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["reward"]["total"] for r in rows] == [4.0, 2.0, 0.0]
    assert rows[2]["id"] == 7  # input fields kept
    printed = capsys.readouterr().out
    assert "scored 3 completions" in printed and "total=2.0000" in printed
    assert "yes" in printed.splitlines()[-2] and printed.splitlines()[-1].split() == ["no", "0", "1", "1"]


def test_malformed_lines_are_skipped_with_their_number(tmp_path, capsys):
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"completion": GOOD, "label": {"answer": "yes"}}),
            "{broken",
            json.dumps({"completion": GOOD}),
            json.dumps({"completion": GOOD, "label": {"answer": "perhaps"}}),
            json.dumps({"completion": GOOD, "label": '{"answer": ' + "[" * 5000 + "]" * 5000 + "}"}),
            json.dumps({"completion": 7, "label": {"answer": "no"}}),
            json.dumps({"completion": [{"role": "assistant", "content": GOOD}], "label": {"answer": "yes"}}),
        ],
    )
    assert main([str(source), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "line 2: invalid JSON" in captured.err
    assert "line 3: missing 'label'" in captured.err
    assert "line 4: label: answer must be 'yes' or 'no'" in captured.err
    assert "line 5: label: JSON nested too deeply" in captured.err  # not a RecursionError traceback
    assert "line 6: completion: expected text" in captured.err
    assert "scored 2 completions, skipped 5 malformed lines" in captured.out  # chat messages score


def test_strict_fails_and_writes_nothing(tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"completion": GOOD, "label": {"answer": "yes"}}), "[]"])
    out = tmp_path / "out.jsonl"
    assert main([str(source), "-o", str(out), "--strict"]) == 2
    assert "line 2: expected a JSON object" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [source]


def test_console_script_runs_as_module(tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"completion": GOOD, "label": {"answer": "yes"}})])
    done = subprocess.run([sys.executable, "-m", "rewards.cli", str(source)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "scored 1 completions" in done.stdout


def test_missing_input_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "missing.jsonl")])
    assert exit_.value.code == 2
    assert "input file not found" in capsys.readouterr().err

"""Command lines that guide: every option has help and shows its default, `-` is stdin or
stdout wherever a file is read or written, a missing extra is one line naming the
install command, and a missing records file says how to make one."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from iadr1_rl.data.cli import build_parser as data_parser
from iadr1_rl.eval.cli import build_parser as eval_parser
from rewards.cli import build_parser as score_parser
from rewards.server.cli import build_parser as server_parser

ROOT = Path(__file__).resolve().parent.parent


def recipe_parser(name: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


PARSERS = {
    "iadr1-score": score_parser,
    "iadr1-reward-server": server_parser,
    "iadr1-data": data_parser,
    "iadr1-eval": eval_parser,
    "pa_sft.py": lambda: recipe_parser("pa_sft"),
    "sc_grpo.py": lambda: recipe_parser("sc_grpo"),
    "demo.py": lambda: recipe_parser("demo"),
}


def every_parser(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from every_parser(sub, f"{name} {command}")


def all_parsers():
    for name, make in PARSERS.items():
        yield from every_parser(make(), name)


@pytest.mark.parametrize(("name", "parser"), list(all_parsers()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_has_help_and_shows_its_default(name, parser):
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label}: no help text"
        shown = action.default not in (None, argparse.SUPPRESS, False) and action.option_strings
        if shown:
            assert f"(default: {action.default})" in " ".join(text.split()) or "%(default)" in action.help, (
                f"{name} {label}: default {action.default!r} not shown"
            )


def test_defaults_are_visible_where_users_asked():
    synth = dict(every_parser(data_parser(), "iadr1-data"))["iadr1-data synth"].format_help()
    assert "(default: 1000)" in synth  # --n
    assert "(default: (3, 3))" in " ".join(synth.split()) or "(default: 3x3)" in synth  # --grid
    run = dict(every_parser(eval_parser(), "iadr1-eval"))["iadr1-eval run"].format_help()
    assert "(default: 0)" in run  # --shots


# ------------------------------------------------------------------ `-` for stdin/stdout
COMPLETION = "<think>clean</think><answer>no</answer>"


def run_cli(module: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_score_reads_stdin_and_writes_stdout():
    lines = json.dumps({"completion": COMPLETION, "label": {"answer": "no"}}) + "\n"
    done = run_cli("rewards.cli", "-", "-o", "-", "--no-progress", stdin=lines * 3)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 3 and all(row["reward"]["total"] == 2.0 for row in rows)  # format 1 + answer 1
    assert "scored 3 completions" in done.stderr  # the summary is not mixed into the data


def test_data_validate_and_export_through_pipes(synthetic_records):
    records = synthetic_records.read_text()
    first = json.loads(records.splitlines()[0])
    # Image paths on stdin are relative to the current folder: make them absolute first.
    base = synthetic_records.parent
    first["images"] = [str(base / image) for image in first["images"]]
    done = run_cli("iadr1_rl.data.cli", "validate", "-", stdin=json.dumps(first) + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 records" in done.stdout
    done = run_cli("iadr1_rl.data.cli", "-q", "export", "--to", "openrlhf", str(synthetic_records), "-")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 24 and {"prompt", "images", "label"} <= set(rows[0])
    done = run_cli("iadr1_rl.data.cli", "-q", "export", "--to", "verl", str(synthetic_records), "-")
    assert done.returncode == 2 and "verl" in done.stderr and "stdout" in done.stderr


def test_eval_score_reads_stdin():
    row = {"id": "1", "dataset": "D", "label": {"answer": "no"}, "output": COMPLETION}
    done = run_cli("iadr1_rl.eval.cli", "score", "-", stdin=json.dumps(row) + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[0] == "D"


# ------------------------------------------------------------------ missing extras
BLOCK = """
import sys
from importlib.abc import MetaPathFinder
class Block(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = [{prog!r}, *{argv!r}]
from {module} import {function}
sys.exit({function}())
"""


@pytest.mark.parametrize(
    ("prog", "argv", "module", "function", "blocked", "extra"),
    [
        # The server's --help needs no extra; starting it does (the port is never bound: uvicorn is missing).
        (
            "iadr1-reward-server",
            ["--port", "5999"],
            "rewards.launch",
            "reward_server",
            {"fastapi", "uvicorn"},
            "server",
        ),
        ("iadr1-data", ["--help"], "iadr1_rl.launch", "data", {"numpy", "PIL"}, "data"),
        ("iadr1-eval", ["--help"], "iadr1_rl.launch", "evaluate", {"torch", "transformers"}, "train"),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_install(prog, argv, module, function, blocked, extra):
    code = BLOCK.format(blocked=blocked, prog=prog, argv=argv, module=module, function=function)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert f'pip install "iadr1-rl[{extra}]"' in done.stderr and prog in done.stderr


def test_the_launchers_run_the_commands():
    for prog, module, function in [
        ("iadr1-data", "iadr1_rl.launch", "data"),
        ("iadr1-eval", "iadr1_rl.launch", "evaluate"),
    ]:
        code = f"import sys; sys.argv = [{prog!r}, '--help']; from {module} import {function}; {function}()"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0 and "usage:" in done.stdout, done.stderr


# ------------------------------------------------------------------ records hints
def test_a_dry_run_without_records_says_how_to_make_them(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "sc_grpo.py"),
            "--config",
            str(ROOT / "recipes" / "configs" / "qwen2_5_vl_3b.yaml"),
            "--backend",
            "openrlhf",
            "--dry-run",
            f"grpo.output={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert "training records not found" in done.stderr
    assert "iadr1-data synth" in done.stderr and "data.train=" in done.stderr


def test_a_missing_records_file_says_how_to_make_one(tmp_path):
    done = run_cli("iadr1_rl.eval.cli", "score", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2 and "not found" in done.stderr
    done = run_cli("iadr1_rl.data.cli", "export", "--to", "openrlhf", str(tmp_path / "nope.jsonl"), "out.jsonl")
    assert done.returncode == 2 and "records file not found" in done.stderr and "iadr1-data synth" in done.stderr


def test_convert_reads_stdin(synthetic_records, tmp_path):
    """sharegpt rows piped in (as `export … -` writes them) convert back to records."""
    exported = run_cli("iadr1_rl.data.cli", "-q", "export", "--to", "sharegpt", str(synthetic_records), "-")
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "back.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "iadr1_rl.data.cli", "convert", "--from", "sharegpt", "-", str(out)],
        input=exported.stdout,
        capture_output=True,
        text=True,
        cwd=ROOT,  # the rows' image paths are relative to the folder they were written for
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 24


# ------------------------------------------------------------------ evaluation hints
@pytest.mark.parametrize(("output", "hinted"), [("Yes, there is a scratch.", True), (COMPLETION, False)])
def test_score_hints_format_plain_when_most_outputs_are_unparsed(output, hinted):
    rows = [{"id": str(i), "dataset": "D", "label": {"answer": "no"}, "output": output} for i in range(4)]
    done = run_cli("iadr1_rl.eval.cli", "score", "-", stdin="".join(json.dumps(r) + "\n" for r in rows))
    assert done.returncode == 0, done.stderr
    assert ("--format plain" in done.stderr) == hinted, done.stderr
    if hinted:
        assert "4 of 4 outputs have no answer in the 'tags' format" in done.stderr

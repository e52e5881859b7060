"""Converters on fixture trees the tests build (real PNGs and masks) and on the real
MMAD files in ../shared/data/mmad."""

import json

import numpy as np
import pytest
from PIL import Image

from iadr1_rl.data.cli import main as data_main
from iadr1_rl.data.converters import from_authors_grpo, from_mmad, from_mvtec, from_sharegpt
from iadr1_rl.data.records import load_records


def png(path, mask_box=None, size=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask_box is None:
        Image.new("RGB", (size, size), (120, 120, 120)).save(path)
    else:
        array = np.zeros((size, size), np.uint8)
        top, left, bottom, right = mask_box
        array[top:bottom, left:right] = 255
        Image.fromarray(array).save(path)


@pytest.fixture
def mvtec_tree(tmp_path):
    """Two categories in the MVTec-AD layout, masks where the defects are."""
    root = tmp_path / "MVTec-AD"
    for category in ("bottle", "screw"):
        png(root / category / "train" / "good" / "000.png")
        png(root / category / "train" / "good" / "001.png")
        png(root / category / "test" / "good" / "000.png")
    png(root / "bottle" / "test" / "broken_large" / "000.png")
    png(root / "bottle" / "ground_truth" / "broken_large" / "000_mask.png", (5, 5, 20, 20))  # top left
    png(root / "bottle" / "test" / "broken_large" / "001.png")
    png(root / "bottle" / "ground_truth" / "broken_large" / "001_mask.png", (35, 20, 50, 70))  # centre row, 3 cells
    png(root / "screw" / "test" / "scratch_head" / "000.png")
    png(root / "screw" / "ground_truth" / "scratch_head" / "000_mask.png", (70, 70, 88, 88))  # bottom right
    png(root / "screw" / "test" / "brand_new_kind" / "000.png")  # no mask: location left empty
    return root


def test_mvtec_layout(mvtec_tree):
    records = {r.id: r for r in from_mvtec(mvtec_tree, shots=1)}
    assert len(records) == 6
    top_left = records["MVTec-AD/bottle/broken_large/000"]
    assert top_left.label["cells"] == [1] and top_left.label["location"] == "top left"
    assert top_left.label["type"] == "breakage" and top_left.label["answer"] == "yes"
    assert top_left.images[0].endswith("bottle/train/good/000.png")  # 1-shot reference first
    wide = records["MVTec-AD/bottle/broken_large/001"]
    assert wide.label["cells"] == [4, 5, 6]  # each holds >= 20 % of the mask
    assert records["MVTec-AD/screw/scratch_head/000"].label["cells"] == [9]
    assert records["MVTec-AD/screw/scratch_head/000"].label["type"] == "scratch"
    unknown = records["MVTec-AD/screw/brand_new_kind/000"]
    assert unknown.label["cells"] == [] and unknown.label["type"] == "brand new kind"
    good = records["MVTec-AD/screw/good/000"]
    assert good.label == {
        "answer": "no",
        "location": "",
        "cells": [],
        "type": "",
        "category": "screw",
        "dataset": "MVTec-AD",
    }


def test_mvtec_type_map_and_single_category(mvtec_tree, tmp_path):
    type_map = tmp_path / "types.yaml"
    type_map.write_text("brand_new_kind: surface damage\n")
    out = tmp_path / "screw.jsonl"
    assert (
        data_main(
            [
                "convert",
                "--from",
                "mvtec",
                str(mvtec_tree / "screw"),
                str(out),
                "--type-map",
                str(type_map),
                "--dataset",
                "MVTec",
            ]
        )
        == 0
    )
    records = load_records(out)
    assert len(records) == 3 and {r.dataset for r in records} == {"MVTec"}
    assert {r.label["type"] for r in records} == {"", "scratch", "surface damage"}


def test_mvtec_errors_are_named(tmp_path, capsys):
    assert data_main(["convert", "--from", "mvtec", str(tmp_path), str(tmp_path / "o.jsonl")]) == 2
    assert "no <category>/test/ folders" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "total", "anomalous", "normal"),
    [("SDD", 340, 54, 286), ("MPDD", 458, 282, 176), ("DTD", 1304, 947, 357)],
)
def test_mmad_counts_match_the_readme(shared_dir, name, total, anomalous, normal):
    records = list(from_mmad(shared_dir / "data" / "mmad" / f"test_{name}_format.json"))
    answers = [r.answer for r in records]
    assert (len(records), answers.count("yes"), answers.count("no")) == (total, anomalous, normal)
    assert {r.dataset for r in records} == {name}


def test_mmad_one_shot_and_types(shared_dir, tmp_path):
    dtd = list(from_mmad(shared_dir / "data" / "mmad" / "test_DTD_format.json", image_root=tmp_path, shots=1))
    assert all(len(r.images) == 2 and "/template/" in r.images[0] for r in dtd)
    assert dtd[0].images[1] == str(tmp_path / dtd[0].id)
    mpdd = list(from_mmad(shared_dir / "data" / "mmad" / "test_MPDD_format.json"))
    assert {r.label["type"] for r in mpdd if r.answer == "yes"} >= {"hole", "scratch"}
    with pytest.raises(ValueError, match="no similar_templates"):
        list(from_mmad(shared_dir / "data" / "mmad" / "test_SDD_format.json", shots=1))


def test_authors_formats_round_trip(tmp_path):
    from iadr1_rl.data.synth import SynthConfig, synthesize

    synthesize(tmp_path / "synth", SynthConfig(n=10, seed=0))
    source = tmp_path / "synth" / "records.jsonl"
    originals = load_records(source)
    for target, reader in (("authors-grpo", from_authors_grpo), ("sharegpt", from_sharegpt)):
        out = tmp_path / "export" / f"{target}.json"
        assert data_main(["-q", "export", "--to", target, str(source), str(out)]) == 0
        back = list(reader(out))
        assert [r.response for r in back] == [r.response for r in originals]
        assert [r.label["answer"] for r in back] == [r.label["answer"] for r in originals]
        assert [r.label["cells"] for r in back] == [r.label["cells"] for r in originals]
        assert [r.label["type"] for r in back] == [r.label["type"] for r in originals]
        assert [r.images for r in back] == [[str(p) for p in r.images] for r in originals]
        # and into records again
        assert data_main(["convert", "--from", target, str(out), str(tmp_path / f"{target}.jsonl")]) == 0
    rows = json.loads((tmp_path / "export" / "authors-grpo.json").read_text())
    assert set(rows[0]) == {"image", "problem", "solution"} and rows[0]["problem"].startswith("You are an expert")


def test_openrlhf_export_loads_through_openrlhf_dataset(tmp_path, tiny_processor):
    """The exported rows go through OpenRLHF's own PromptDataset with a local processor."""
    from types import SimpleNamespace

    from openrlhf.datasets.prompts_dataset import PromptDataset

    from iadr1_rl.data.synth import SynthConfig, synthesize
    from rewards import Scorer

    synthesize(tmp_path / "synth", SynthConfig(n=6, seed=0, shots=1))
    out = tmp_path / "openrlhf.jsonl"
    assert data_main(["-q", "export", "--to", "openrlhf", str(tmp_path / "synth" / "records.jsonl"), str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    data_args = SimpleNamespace(input_key="prompt", label_key="label", apply_chat_template=True, image_key="images")
    strategy = SimpleNamespace(args=SimpleNamespace(data=data_args), is_rank_0=lambda: True)
    dataset = PromptDataset(rows, tiny_processor, strategy)
    _source, prompt, label, images = dataset[0]
    assert prompt.count("<|image_pad|>") == 2  # reference and query
    assert prompt.endswith("<|im_start|>assistant\n")
    assert images == rows[0]["images"] and all(p.startswith("/") for p in images)
    assert Scorer().parse_label(label).answer in ("yes", "no")  # our reward reads the label column

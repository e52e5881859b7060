"""The synthetic generator: deterministic, balanced, labels that agree with the masks."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from iadr1_rl.data.masks import mask_cells
from iadr1_rl.data.records import load_records
from iadr1_rl.data.synth import DEFECT_TYPES, TYPE_WORDINGS, SynthConfig, synthesize
from rewards import SAME_CATEGORY_RULES, Scorer, TypeMatcher, location_cells


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SynthConfig(n=120, seed=3, shots=1))
    return out


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 1), (b, 1), (c, 2)):
        synthesize(folder, SynthConfig(n=30, seed=seed))
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_balanced_and_every_defect_type(synth_dir):
    records = load_records(synth_dir / "records.jsonl")
    answers = [r.answer for r in records]
    assert answers.count("yes") == answers.count("no") == 60
    assert {r.label["type"] for r in records if r.answer == "yes"} == set(DEFECT_TYPES.values())


def test_mask_cells_agree_with_location_and_response(synth_dir):
    scorer = Scorer()
    for record in load_records(synth_dir / "records.jsonl"):
        if record.answer == "no":
            assert record.label["cells"] == [] and "<location>" not in record.response
            assert not (synth_dir / "masks" / f"{record.id}.png").exists()
            continue
        mask = np.asarray(Image.open(synth_dir / "masks" / f"{record.id}.png"))
        assert mask.any()
        assert mask_cells(mask) == record.label["cells"]
        assert location_cells(record.label["location"]) == set(record.label["cells"])
        # The PA-SFT target earns the full reward against its own label.
        assert scorer.score(record.response, record.label).total == 4.0


def test_one_shot_reference_is_normal_and_same_product(synth_dir):
    records = load_records(synth_dir / "records.jsonl")
    assert all(len(r.images) == 2 and "references" in r.images[0] for r in records)
    by_reference = {}
    for r in records:
        by_reference.setdefault(r.images[0], set()).add(r.label["category"])
    assert all(len(categories) == 1 for categories in by_reference.values())


def test_images_have_the_configured_size(synth_dir):
    record = load_records(synth_dir / "records.jsonl")[0]
    assert Image.open(record.query_image).size == (112, 112)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n": 0}, "n must be"),
        ({"size": 100}, "multiple of 28"),
        ({"defects": ("dent",)}, "unknown defects"),
        ({"categories": ("glass",)}, "unknown categories"),
        ({"shots": 2}, "shots"),
        ({"type_wordings": 0}, "type_wordings must lie in 1..4"),
        ({"type_wordings": 5}, "type_wordings must lie in 1..4"),
    ],
)
def test_bad_config_is_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SynthConfig(**kwargs)


@pytest.mark.parametrize("kind", sorted(TYPE_WORDINGS))
def test_every_type_wording_is_the_labels_category(kind):
    # Each wording is the label's kind of defect to the reward's default vocabulary: the
    # label's own term scores 1.0, its synonyms less than that but still that category.
    matcher, label = TypeMatcher(), DEFECT_TYPES[kind]
    first, *synonyms = TYPE_WORDINGS[kind]
    assert first == label and matcher.match(first, label).score == 1.0
    for word in synonyms:
        match = matcher.match(word, label)
        assert match.rule in SAME_CATEGORY_RULES and 0 < match.score < 1, (word, match)


def test_varied_type_words_change_only_the_words(tmp_path):
    plain, varied = tmp_path / "plain", tmp_path / "varied"
    synthesize(plain, SynthConfig(n=60, seed=4, cot="short"))
    synthesize(varied, SynthConfig(n=60, seed=4, cot="short", type_wordings=4))
    # The same images and labels: the wording draws from its own random stream.
    assert digest(plain / "images") == digest(varied / "images")
    pairs = list(zip(load_records(plain / "records.jsonl"), load_records(varied / "records.jsonl"), strict=True))
    assert all(a.label == b.label for a, b in pairs)
    kinds = {value: key for key, value in DEFECT_TYPES.items()}
    words = set()
    for a, b in pairs:
        if a.answer == "no":
            assert a.response == b.response
            continue
        word = b.response.split("<type>")[1].split("</type>")[0]
        assert word in TYPE_WORDINGS[kinds[b.label["type"]]]
        assert f", a {word}.</think>" in b.response  # reasoning and tag name it alike
        assert a.response.replace(a.label["type"], word) == b.response
        words.add(word)
    assert len(words) > len(DEFECT_TYPES)  # synonyms, not only the labels' terms


def test_cli_synth_and_validate(tmp_path, capsys):
    from iadr1_rl.data.cli import main

    assert main(["-q", "synth", "--n", "12", "--seed", "5", "--defects", "hole,stain", str(tmp_path)]) == 0
    assert main(["validate", str(tmp_path / "records.jsonl")]) == 0
    types = {json.loads(line)["label"]["type"] for line in (tmp_path / "records.jsonl").read_text().splitlines()}
    assert types == {"", "hole", "stain"}
    assert "0 errors, 0 warnings" in capsys.readouterr().out

"""Scorer configs: presets, the resolved configuration a run saves, and its digest."""

import json
import subprocess
import sys

import pytest

from benchmarks.corpus import rollout_corpus
from rewards import Scorer

COMPLETIONS, LABELS = rollout_corpus(200, seed=5)
VOCABULARY = {"groups": {"surface": {"Crack": ["fissure", "hairline"]}, "shape": {"Dent": ["bump"]}}}

CONFIGS = [
    {},
    {"preset": "default"},
    {"grid": [4, 4], "weights": {"type": 2}},
    {"weights": [1, 1, 0.5, 0.5], "epsilon": 0.01},
    {"vocabulary": VOCABULARY, "type_scores": {"semantic": 0.7}},
    {"preset": "authors"},
    {"preset": "authors", "weights": {"consistency": 2}},
]


@pytest.mark.parametrize("config", CONFIGS, ids=[json.dumps(c)[:40] for c in CONFIGS])
def test_the_resolved_config_scores_alike(config, tmp_path):
    scorer = Scorer.from_config(config)
    resolved = scorer.to_config()
    path = tmp_path / "scorer.json"
    path.write_text(json.dumps(resolved))
    again = Scorer.from_config(path)
    assert again.digest == scorer.digest and again.to_config() == resolved
    assert again.score_batch(COMPLETIONS, LABELS) == scorer.score_batch(COMPLETIONS, LABELS)


def test_digests_name_the_configuration():
    digests = {Scorer.from_config(config).digest for config in CONFIGS}
    # {} and {"preset": "default"} are the same configuration; every other differs.
    assert len(digests) == len(CONFIGS) - 1
    assert Scorer().digest == Scorer.from_config({"weights": {"type": 1}}).digest
    assert Scorer().describe() == {"preset": "default", "digest": Scorer().digest}


def test_the_digest_is_the_same_in_another_process():
    code = "from rewards import Scorer; print(Scorer(preset='authors').digest, Scorer(grid=(2, 2)).digest)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [Scorer(preset="authors").digest, Scorer(grid=(2, 2)).digest]


def test_preset_in_a_yaml_file(tmp_path):
    (tmp_path / "scorer.yaml").write_text("preset: authors\nweights: {type: 1}\n")
    scorer = Scorer.from_config(tmp_path / "scorer.yaml")
    assert scorer.preset == "authors" and scorer.weights.type == 1 and scorer.weights.location == 0.5


BAD_CONFIGS = [
    # (config, words the error must contain)
    ({"preset": "nope"}, "preset must be one of"),
    ({"grids": [3, 3]}, "unknown keys"),
    ({"grid": "3x3"}, "grid must be"),
    ({"grid": [0, 3]}, "at least one row"),
    ({"weights": {"format": 1}}, "unknown parts"),
    ({"weights": "1,1,1,1"}, "weights"),
    ({"type_scores": {"exact": -1}}, "exact must be a finite number"),
    ({"type_scores": {"exactly": 1}}, "unknown keys"),
    ({"type_scores": {"fuzzy_threshold": 70}}, "similarity in"),
    ({"epsilon": True}, "epsilon"),
    ({"epsilon": -1}, "epsilon"),
    ({"vocabulary": {"groups": {}}}, "non-empty"),
    ([1, 2], "expected a mapping"),
]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_configs_are_named(config, message):
    with pytest.raises(ValueError, match=message):
        Scorer.from_config(config)


def test_a_config_file_that_is_not_a_mapping(tmp_path):
    (tmp_path / "scorer.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"scorer\.yaml: expected a mapping"):
        Scorer.from_config(tmp_path / "scorer.yaml")
    with pytest.raises(ValueError, match="file not found"):
        Scorer.from_config(tmp_path / "missing.yaml")

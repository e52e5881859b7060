"""docs/reward.md "Type": normalisation, categories, ambiguity and each of the ten rules."""

import json

import pytest

from rewards import Scorer, TypeMatcher, TypeRuleScores, Vocabulary, normalise_type, type_score

NORMALISE_CASES = [
    ("Scratches", "scratch"),  # spec example: plural and case
    ("foreign-objects", "foreign object"),  # spec example: hyphen to space
    ("foreign_objects", "foreign object"),  # underscore to space
    ("  Surface   Scratch!! ", "surfac scratch"),  # whitespace collapsed, punctuation dropped, stemmed
    ("ｓｃｒａｔｃｈ", "scratch"),  # NFKC folds full-width letters
    ("scr\u200batch", "scratch"),  # zero-width space dropped
    ("stain\x00", "stain"),  # NUL dropped
    ("hole 🕳", "hole"),  # emoji dropped
    ("\ud800hole", "hole"),  # a lone surrogate dropped
    ("", ""),
]


@pytest.mark.parametrize(("text", "normalised"), NORMALISE_CASES)
def test_normalise_type(text, normalised):
    assert normalise_type(text) == normalised


RULE_CASES = [
    # (prediction, label, rule, score)
    ("", "scratch", "empty", 0.0),  # 1: empty prediction
    ("scratch", "", "empty", 0.0),  # 1: empty label
    ("!!!", "scratch", "empty", 0.0),  # 1: empty after normalisation
    ("scratch and grinding damage", "scratch", "ambiguous", 0.0),  # 2: spec example
    ("scratch, hole, stain", "scratch", "ambiguous", 0.0),  # 2: a list of guesses
    ("scratch or dent or hole", "hole", "ambiguous", 0.0),
    ("hole", "scratch", "group_mismatch", 0.0),  # 3: structural vs surface
    ("surface anomaly", "hole", "group_mismatch", 0.0),  # 3: a group name of the other group
    ("surface anomaly", "scratch", "group_name", 0.3),  # 4: group name, category inside it
    ("scratch", "surface anomalies", "group_name", 0.3),  # 4: the label side, plural
    ("Scratches", "scratch", "exact", 1.0),  # 5
    ("structural anomaly", "Structural Anomalies", "exact", 1.0),  # 5: two equal group names
    ("scratch", "surface scratch", "semantic", 0.85),  # 6: prediction inside the label
    ("deep scratch", "scratch", "semantic", 0.85),  # 6: label inside the prediction
    ("stain", "dirt", "category", 0.85),  # 7: both exact terms of Contamination
    ("hole", "perforation", "category", 0.85),  # 7: both exact terms of Hole
    ("grinding damage", "abrasion", "category", 0.85),  # 7: `grinding damage` is one Abrasion term
    ("stain", "debris", "same_group", 0.3),  # 8: Contamination and Foreign objects, surface
    ("warping", "fracture", "same_group", 0.3),  # 8: Deformation and Damage, structural
    ("crack", "cracks", "exact", 1.0),  # unknown words still compare after stemming
    ("cracking", "crack", "exact", 1.0),  # snowball: cracking -> crack
    ("crak", "crack", "fuzzy", 0.4 * 8 / 9),  # 9: fuzzy ratio 0.889
    ("dent", "scratch", "none", 0.0),  # 10: nothing in common
    ("corosion", "corrosion", "fuzzy", None),  # 9: unknown to the vocabulary; value checked below
    ("bent", "bend", "category", 0.6 + 0.25 * 4 / 11),  # 7: `bent` lies in `bent compon`, conf 4/11
]


@pytest.mark.parametrize(("prediction", "label", "rule", "score"), RULE_CASES)
def test_type_rules(prediction, label, rule, score):
    match = TypeMatcher().match(prediction, label)
    assert match.rule == rule
    if score is not None:
        assert match.score == pytest.approx(score)


def test_fuzzy_value_is_ratio_times_factor():
    from rapidfuzz import fuzz

    match = TypeMatcher().match("corosion", "corrosion")
    assert match.score == pytest.approx(0.4 * fuzz.ratio("coros", "corros") / 100)


def test_category_confidence_enters_rule_7():
    # `scrach` is not a term: fuzzy category Scratch with confidence ratio("scrach", "scratch").
    from rapidfuzz import fuzz

    matcher = TypeMatcher()
    described = matcher.describe(normalise_type("scrach"))
    assert described.category == "Scratch"
    assert described.confidence == pytest.approx(fuzz.ratio("scrach", "scratch") / 100)
    assert matcher.match("scrach", "scratch mark").score == pytest.approx(0.6 + 0.25 * described.confidence)


def test_contained_term_confidence_is_length_ratio():
    # `visible surface scratch` contains the term `surfac scratch`: conf = len ratio.
    matcher = TypeMatcher()
    text = normalise_type("visible surface scratch")
    described = matcher.describe(text)
    assert described.category == "Scratch"
    assert described.confidence == pytest.approx(len("surfac scratch") / len(text))


def test_maximal_finds_only():
    matcher = TypeMatcher()
    assert not matcher.describe(normalise_type("grinding damage")).ambiguous  # Abrasion hides Damage
    assert matcher.describe(normalise_type("scratch and grinding damage")).ambiguous
    assert not matcher.describe(normalise_type("surface scratch mark")).ambiguous  # overlap, one category


def test_custom_rule_values():
    matcher = TypeMatcher(scores=TypeRuleScores(semantic=0.5))
    assert matcher.match("scratch", "surface scratch").score == 0.5


def test_type_score_default_function():
    assert type_score("Scratches", "scratch") == 1.0
    assert type_score(None, "scratch") == 0.0


def test_custom_vocabulary_from_dict_and_files(tmp_path):
    groups = {"groups": {"electrical": {"Short": ["short circuit", "bridge"]}, "cosmetic": {"Smudge": ["smear"]}}}
    json_path = tmp_path / "vocab.json"
    json_path.write_text(json.dumps(groups))
    yaml_path = tmp_path / "vocab.yaml"
    yaml_path.write_text(
        "groups:\n  electrical:\n    Short: [short circuit, bridge]\n  cosmetic:\n    Smudge: [smear]\n"
    )
    for source in (groups, json_path, str(yaml_path)):
        scorer = Scorer(vocabulary=source)
        assert scorer.type_matcher.match("bridge", "short circuit").rule == "category"
        assert scorer.type_matcher.match("smear", "bridge").rule == "group_mismatch"


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({}, "non-empty"),
        ({"g": {"A": "not a list"}}, "list of terms"),
        ({"g": {"A": ["x"]}, "h": {"B": ["x"]}}, "belongs to both"),
        ({"g": {"A": [""]}}, "empty or non-text"),
        ({"g": {"A": ["g"]}}, "also a group name"),
        ({"g": ["A"]}, "map category names"),
    ],
)
def test_bad_vocabulary_is_named(groups, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(groups=groups)


def test_missing_vocabulary_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        Vocabulary.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        Vocabulary.load(bad)

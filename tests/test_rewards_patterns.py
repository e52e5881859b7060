"""docs/reward.md "Format consistency" and "Answer accuracy": table-driven, one comment per case."""

import pytest

from rewards.patterns import extract_answer, matches_anomalous_pattern, matches_normal_pattern

NORMAL_CASES = [
    # (completion, matches P_N)
    ("<think>uniform texture</think><answer>no</answer>", True),  # the pattern itself
    ("  <think>t</think>\n\n<answer>no</answer>\n", True),  # whitespace around and between
    ("<think>t</think><answer>yes</answer>", True),  # the answer value is R_a's business
    ("<think>t</think>", False),  # no answer pair
    ("<answer>no</answer>", False),  # no think pair
    ("<answer>no</answer><think>t</think>", False),  # wrong order
    ("<think> </think><answer>no</answer>", False),  # empty think after stripping
    ("<think>t</think><answer>\n</answer>", False),  # empty answer
    ("<think>t</think> so <answer>no</answer>", False),  # text between pairs
    ("Sure! <think>t</think><answer>no</answer>", False),  # text before
    ("<think>t</think><answer>no</answer> done", False),  # text after
    ("<think>t</think><think>u</think><answer>no</answer>", False),  # think twice
    ("<think>a <answer>no</answer></think><answer>no</answer>", False),  # tag inside content
    ("<think>t</think><location>top</location><answer>no</answer>", False),  # P_N has no location
    ("<think>t <type>x</type></think><answer>no</answer>", False),  # nor a type anywhere
    ("<think>t</think><answer>no</answer></location>", False),  # stray closing tag
    ("<THINK>t</THINK><ANSWER>no</ANSWER>", False),  # tags are lowercase and literal
    ("<think >t</think><answer>no</answer>", False),  # `<think >` is not a tag
    ("<think>t<answer>no</answer>", False),  # unclosed think
    ("</think>t<think><answer>no</answer>", False),  # closing before opening
    ("", False),  # empty completion
]

ANOMALOUS_CASES = [
    ("<think>a</think><location>top left</location><type>scratch</type><answer>yes</answer>", True),
    ("<think>a</think>\n<location>top</location>\n<type>hole</type>\n<answer>no</answer>", True),  # any answer
    ("<think>a</think><type>hole</type><location>top</location><answer>yes</answer>", False),  # order
    ("<think>a</think><location>top</location><answer>yes</answer>", False),  # no type
    ("<think>a</think><location> </location><type>hole</type><answer>yes</answer>", False),  # empty location
    ("<think>a</think><location>top</location><type>hole</type><answer>yes</answer><answer>no</answer>", False),
    ("<think>a</think><location>top</location><type>hole</type><type>stain</type><answer>yes</answer>", False),
    ("<think>a</think><answer>yes</answer>", False),  # the normal pattern is not P_A
]


@pytest.mark.parametrize(("completion", "expected"), NORMAL_CASES)
def test_normal_pattern(completion, expected):
    assert matches_normal_pattern(completion) is expected


@pytest.mark.parametrize(("completion", "expected"), ANOMALOUS_CASES)
def test_anomalous_pattern(completion, expected):
    assert matches_anomalous_pattern(completion) is expected


ANSWER_CASES = [
    ("<think>t</think><answer>yes</answer>", "yes"),
    ("<answer>No</answer>", "no"),  # lowercased; extracted without a full pattern
    ("<answer> YES. </answer>", "yes"),  # stripped, trailing dot dropped
    ("<answer>no!</answer>", "no"),  # trailing exclamation dropped
    ("<answer>no!!.</answer>", "no"),  # several trailing marks
    ("<answer>yes, there is a scratch</answer>", None),  # only yes and no are answers
    ("<answer>maybe</answer>", None),
    ("<answer></answer>", None),
    ("<answer>yes</answer><answer>no</answer>", None),  # two answer pairs
    ("<answer>yes</answer><answer>yes</answer>", None),  # two, even when equal
    ("<answer>yes", None),  # unclosed
    ("</answer>yes<answer>", None),  # reversed
    ("the answer is yes", None),  # no tag
    ("<answer>Ｙｅｓ</answer>", None),  # full-width letters are not `yes` (no NFKC here)
    ("<answer>\nyes\n</answer>", "yes"),  # whitespace inside
]


@pytest.mark.parametrize(("completion", "expected"), ANSWER_CASES)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected

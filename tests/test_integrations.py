"""The scorer in TRL, verl and EasyR1: each adapter gives the `Scorer` total on the same
inputs, and each is driven through its framework's own code as far as it installs here:

- TRL 1.16.0: a real `GRPOTrainer` on CPU (the tiny Qwen2-VL, our Hugging Face export);
- verl 0.9.1 (installed --no-deps): its reward-function loader, its reward-loop
  `NaiveRewardManager` and its legacy `NaiveRewardManager`, and its `RLHFDataset` reading
  our parquet export;
- EasyR1 (not on PyPI; its package is also named `verl`): its documented reward-file
  contract, loaded the way its `AutoRewardManager` loads a file.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from iadr1_rl.data.cli import main as data_main
from rewards import Scorer
from rewards.integrations import easyr1, trl, verl

ROOT = Path(__file__).resolve().parent.parent
ANOMALY = {"answer": "yes", "location": "top left", "type": "hole"}
NORMAL = {"answer": "no"}
COMPLETIONS = [
    "<think>a dark round spot</think><location>upper left</location><type>holes</type><answer>yes</answer>",
    "<think>a dark round spot</think><location>bottom right</location><type>perforation</type><answer>yes</answer>",
    "<think>uniform texture</think><answer>no</answer>",
    "junk <answer>yes",
]


def solution(label: dict) -> str:
    if label["answer"] == "no":
        return "<think>t</think><answer>no</answer>"
    return f"<think>t</think><location>{label['location']}</location><type>{label['type']}</type><answer>yes</answer>"


LABEL_FORMS = {"dict": lambda label: label, "JSON": json.dumps, "solution string": solution}
COMPLETION_FORMS = {"plain": lambda text: text, "conversational": lambda text: [{"role": "assistant", "content": text}]}


def trl_total(scorer, completion, label):
    parts = [f(prompts=["p"], completions=[completion], label=[label])[0] for f in trl.reward_functions(scorer)]
    return sum(parts), parts


def verl_total(scorer, completion, label):
    result = verl.compute_score("MVTec", completion, label, scorer_config=scorer.to_config())
    return result["score"], [result[part] for part in ("consistency", "accuracy", "location", "type")]


def easyr1_total(scorer, completion, label):
    (result,) = easyr1.compute_score(
        [{"response": completion, "response_length": 9, "ground_truth": label}], scorer_config=scorer.to_config()
    )
    return result["overall"], [result[part] for part in ("consistency", "accuracy", "location", "type")]


ADAPTERS = {"trl": trl_total, "verl": verl_total, "easyr1": easyr1_total}
SCORERS = {
    "default": Scorer(),
    "weighted": Scorer(weights={"type": 2, "location": 0.5}),
    "authors": Scorer(preset="authors"),
}


@pytest.mark.parametrize("scorer_name", sorted(SCORERS))
@pytest.mark.parametrize("completion_form", sorted(COMPLETION_FORMS))
@pytest.mark.parametrize("label_form", sorted(LABEL_FORMS))
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_every_adapter_gives_the_scorer_total(adapter, label_form, completion_form, scorer_name):
    scorer = SCORERS[scorer_name]
    for text in COMPLETIONS:
        for label in (ANOMALY, NORMAL):
            expected = scorer.score(text, label)
            total, parts = ADAPTERS[adapter](
                scorer, COMPLETION_FORMS[completion_form](text), LABEL_FORMS[label_form](label)
            )
            assert total == pytest.approx(expected.total)
            assert sum(parts) == pytest.approx(total)  # the weighted, gated parts sum to the total
            assert parts == pytest.approx(list(expected.weighted(scorer.weights).values()))


def test_trl_names_and_errors():
    functions = trl.reward_functions()
    assert [f.__name__ for f in functions] == ["consistency", "accuracy", "location", "type"]
    with pytest.raises(ValueError, match=r"no 'label' column \(it has \['answer'\]\); pass label_key"):
        functions[0](prompts=["p"], completions=["x"], answer=["no"], trainer_state=None)
    assert trl.reward_functions(label_key="gt")[1](prompts=["p"], completions=[COMPLETIONS[2]], gt=[NORMAL]) == [1.0]


def test_the_scorer_config_comes_from_the_environment(monkeypatch, tmp_path):
    config = tmp_path / "scorer.json"
    config.write_text(json.dumps({"weights": {"consistency": 3}}))
    monkeypatch.setenv("IADR1_SCORER_CONFIG", str(config))
    assert verl.compute_score("x", COMPLETIONS[2], NORMAL)["score"] == 4.0
    assert (
        easyr1.compute_score([{"response": COMPLETIONS[2], "response_length": 1, "ground_truth": NORMAL}])[0]["overall"]
        == 4.0
    )


# ------------------------------------------------------------------------------- verl
def verl_batch(tokenizer, responses: list[str], labels: list[dict]):
    """A verl DataProto as its rollout hands it to a reward manager."""
    from verl import DataProto

    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in responses]
    length, prompt = max(map(len, ids)), 3
    response_ids = torch.full((len(ids), length), tokenizer.pad_token_id or 0)
    attention = torch.zeros((len(ids), prompt + length), dtype=torch.long)
    for row, tokens in enumerate(ids):
        response_ids[row, : len(tokens)] = torch.tensor(tokens)
        attention[row, : prompt + len(tokens)] = 1
    return DataProto.from_dict(
        tensors={
            "responses": response_ids,
            "attention_mask": attention,
            "prompts": torch.ones((len(ids), prompt), dtype=torch.long),
        },
        non_tensors={
            "data_source": np.array(["MVTec"] * len(ids), dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": json.dumps(x)} for x in labels], dtype=object),
            "extra_info": np.array([{} for _ in ids], dtype=object),
        },
    )


def test_through_verl_s_reward_loader_and_managers(tiny_processor):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager
    from verl.workers.reward_manager.naive import NaiveRewardManager

    path = ROOT / "rewards" / "integrations" / "verl.py"
    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {"path": str(path), "name": "compute_score", "reward_kwargs": {}},
                "reward_manager": {"source": "register", "name": "naive", "module": {"path": None, "name": "x"}},
            }
        }
    )
    compute_score = get_custom_reward_fn(config)  # verl loads our file by path
    responses = [
        "<think>dark spot</think><location>top left</location><type>hole</type><answer>yes</answer>",
        "<think>uniform</think><answer>no</answer>",
    ]
    labels = [ANOMALY, ANOMALY]
    expected = Scorer().score_batch(responses, labels)
    data = verl_batch(tiny_processor.tokenizer, responses, labels)

    manager = load_reward_manager(config, tiny_processor.tokenizer)  # the reward loop's manager
    single = manager.loop.run_until_complete(manager.run_single(data[0:1]))
    assert single["reward_score"] == expected[0].total == 4.0
    assert single["reward_extra_info"]["type"] == 1.0

    legacy = NaiveRewardManager(tiny_processor.tokenizer, num_examine=0, compute_score=compute_score)
    result = legacy(data, return_dict=True)
    assert result["reward_tensor"].sum(-1).tolist() == [r.total for r in expected] == [4.0, 0.0]
    info = result["reward_extra_info"]  # what verl logs, per key
    assert info["score"] == [4.0, 0.0] and info["consistency"] == [1.0, 0.0] and info["location"] == [1.0, 0.0]


# ----------------------------------------------------------------------------- EasyR1
def load_like_easyr1(path: Path, function_name: str, kwargs: dict):
    """What EasyR1's AutoRewardManager does with `worker.reward.reward_function=PATH:NAME`."""
    spec = importlib.util.spec_from_file_location("custom_reward_fn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return functools.partial(getattr(module, function_name), **kwargs), module.REWARD_NAME, module.REWARD_TYPE


def test_easyr1_s_reward_file_contract(tmp_path):
    config = tmp_path / "scorer.json"
    config.write_text(json.dumps({"preset": "authors"}))
    path = ROOT / "rewards" / "integrations" / "easyr1.py"
    function, name, kind = load_like_easyr1(path, "compute_score", {"scorer_config": str(config)})
    assert (name, kind) == ("iadr1_sc_grpo", "batch")
    inputs = [
        {"response": text, "response_length": len(text), "ground_truth": solution(ANOMALY)} for text in COMPLETIONS
    ]
    scores = function(inputs)
    expected = Scorer(preset="authors").score_batch(COMPLETIONS, [solution(ANOMALY)] * len(COMPLETIONS))
    assert [s["overall"] for s in scores] == [r.total for r in expected]
    assert all(isinstance(v, float) for s in scores for v in s.values())  # EasyR1 averages every key
    with pytest.raises(TypeError, match="expected a list"):
        function(inputs[0])


# -------------------------------------------------------------------------------- TRL
def test_trl_grpo_trainer_logs_every_part(formatted_model, synthetic_records, tmp_path):
    from datasets import load_from_disk
    from trl import GRPOConfig, GRPOTrainer

    from iadr1_rl.models.loading import load_vlm

    assert data_main(["-q", "export", "--to", "hf", str(synthetic_records), str(tmp_path / "hf")]) == 0
    dataset = load_from_disk(str(tmp_path / "hf")).select(range(8))  # prompt, images, label: as TRL takes them
    model, processor = load_vlm(formatted_model)
    calls = []

    def recorded(function):
        def reward(prompts, completions, **kwargs):
            calls.append((function.__name__, completions, kwargs["label"]))
            return function(prompts, completions, **kwargs)

        reward.__name__ = function.__name__
        return reward

    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        use_cpu=True,
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=40,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        bf16=False,
        seed=0,
    )
    functions = [recorded(f) for f in trl.reward_functions()]
    trainer = GRPOTrainer(
        model=model, processing_class=processor, reward_funcs=functions, train_dataset=dataset, args=args
    )
    trainer.train()
    logged = [row for row in trainer.state.log_history if "reward" in row]
    assert len(logged) == 2 and len(calls) == 8  # four parts a step
    scorer = Scorer()
    for step, row in enumerate(logged):
        completions, labels = calls[4 * step][1], calls[4 * step][2]
        assert isinstance(completions[0], list)  # TRL passed conversational completions
        results = scorer.score_batch(completions, labels)
        for part in ("consistency", "accuracy", "location", "type"):
            expected = float(np.mean([getattr(r, part) for r in results]))
            assert row[f"rewards/{part}/mean"] == pytest.approx(expected, abs=1e-6)
            assert f"rewards/{part}/std" in row
        assert row["reward"] == pytest.approx(float(np.mean([r.total for r in results])), abs=1e-6)
    assert any(row["reward"] > 0 for row in logged)  # the formatted model earns some reward


# ---------------------------------------------------------------------------- exports
def test_verl_export_reads_back(synthetic_records, tmp_path, tiny_processor):
    import io

    import pyarrow.parquet as pq
    from omegaconf import OmegaConf
    from PIL import Image
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from iadr1_rl.data.records import load_records

    out = tmp_path / "train.parquet"
    assert data_main(["-q", "export", "--to", "verl", str(synthetic_records), str(out), "--split", "val"]) == 0
    records = load_records(synthetic_records)
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(records) and set(rows[0]) == {
        "data_source",
        "prompt",
        "images",
        "ability",
        "reward_model",
        "extra_info",
    }
    for row, record in zip(rows, records):
        assert (
            row["reward_model"]["style"] == "rule" and json.loads(row["reward_model"]["ground_truth"]) == record.label
        )
        assert row["extra_info"]["id"] == record.id and row["extra_info"]["split"] == "val"
        assert row["prompt"][0]["content"].count("<image>") == len(row["images"]) == len(record.images) == 2
        assert Image.open(io.BytesIO(row["images"][-1]["bytes"])).size == Image.open(record.images[-1]).size
        assert (
            verl.compute_score(row["data_source"], record.response, row["reward_model"]["ground_truth"])["score"]
            == Scorer().score(record.response, record.label).total
        )
    # Its length filter needs qwen_vl_utils (not installed here): off, the reading is what is tested.
    config = {"prompt_key": "prompt", "image_key": "images", "filter_overlong_prompts": False}
    config = OmegaConf.create({**config, "cache_dir": str(tmp_path / "cache")})
    dataset = RLHFDataset(
        data_files=[str(out)], tokenizer=tiny_processor.tokenizer, processor=tiny_processor, config=config
    )
    content = dataset[0]["raw_prompt"][0]["content"]  # verl's own reader turns `<image>` into image items
    assert [item["type"] for item in content].count("image") == 2
    assert all(isinstance(item["image"], Image.Image) for item in content if item["type"] == "image")


def test_hf_export_reads_back(synthetic_records, tmp_path):
    from datasets import load_from_disk
    from PIL import Image

    from iadr1_rl.data.records import load_records

    assert data_main(["-q", "export", "--to", "hf", str(synthetic_records), str(tmp_path / "hf")]) == 0
    dataset = load_from_disk(str(tmp_path / "hf"))
    records = load_records(synthetic_records)
    assert len(dataset) == len(records) and type(dataset.features["images"].feature).__name__ == "Image"
    first = dataset[0]
    assert all(isinstance(image, Image.Image) for image in first["images"]) and len(first["images"]) == 2
    assert [part["type"] for part in first["prompt"][0]["content"]].count("image") == 2
    assert first["problem"].count("<image>") == 2  # EasyR1's prompt key
    assert json.loads(first["label"]) == records[0].label and first["response"] == records[0].response

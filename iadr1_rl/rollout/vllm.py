"""The vLLM engine: an in-process `vllm.LLM` in the rollout actor's own process.

Prompts go in as token ids with each image's placeholder run collapsed to one token (vLLM
expands it again from the image) and the images themselves as `multi_modal_data`; each
prompt asks for its G samples with its own seed (a function of the step's seed and its
place), the log-prob of every sampled token under the distribution it was drawn from
(`logprobs_mode="processed_logprobs"`: after the temperature and the suppression of the
image placeholders), and the finish reason.

Weights through the object store are reloaded in place with vLLM's `reload_weights`
(vLLM 0.31). A sync's buckets are held (zero-copy views of Ray's shared buffers) until its
last one, then loaded in one call: vLLM reloads a layer only from all of its tensors at
once, and a bucket boundary may fall inside one. On GPUs (`rollout.weight_transport` ipc or
nccl) vLLM's own weight-transfer engine of that backend receives them instead
(`init_weight_transfer_engine` … `finish_weight_update`). The prefix, encoder and
multimodal caches are reset after every sync.

On a GPU the engine can sleep (free its KV cache and weights' memory) while the policy
trains and wake before sampling (`rollout.sleep`, `rollout.sleep_level`: `rollout/sleep.py`);
on CPU vLLM has no sleep mode. `rollout.tensor_parallel_size` > 1 spreads one engine over
that many GPUs (vLLM's multiprocessing executor inside the actor, which Ray gave them).
Requires `make install-vllm` (vLLM cannot live beside the server extra's pins).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

import torch

from ..memory.vllm_sizing import vllm_enforce_eager, vllm_memory_args
from ..models.encoding import EncodedPrompt
from ..models.generation import SamplingConfig
from ..models.processor import load_processor
from .engine import Completion, RolloutEngine, grouped
from .sleep import SleepSchedule

logger = logging.getLogger(__name__)

# The most a logit bias can lower a token (vLLM clamps to ±100): e^-100 of the mass.
SUPPRESS = -100.0


def require_vllm():
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "rollout.engine=vllm needs vLLM: `make install-vllm` installs it into .venv-vllm "
            "(its pins cannot live beside the server extra's); run with .venv-vllm/bin/python"
        ) from error
    return vllm


def collapse_placeholders(token_ids: Sequence[int], placeholder: int) -> list[int]:
    """Each run of `placeholder` tokens as one token (vLLM expands it from the image).

    >>> collapse_placeholders([1, 7, 7, 7, 2, 7, 7, 3], 7)
    [1, 7, 2, 7, 3]
    """
    out: list[int] = []
    for token in token_ids:
        if token == placeholder and out and out[-1] == placeholder:
            continue
        out.append(token)
    return out


class VLLMEngine(RolloutEngine):
    @classmethod
    def import_code(cls) -> None:
        require_vllm()

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        max_pixels: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.5,
        kv_cache_gib: float | None = None,
        enforce_eager: bool | None = None,
        sleep: bool = False,
        sleep_level: int = 1,
        images_per_prompt: int = 2,
        tensor_parallel_size: int = 1,
        weight_transport: str = "object_store",
        device: str = "cpu",
    ) -> None:
        if max_model_len is None:
            max_model_len = _model_max_length(model_path)
        # In-process engine core: weights reload from tensors, and it stays in this actor.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        vllm = require_vllm()
        on_gpu = torch.device(device).type == "cuda"
        if not on_gpu:
            keep_cpu_linear_weights()
        self.processor = load_processor(model_path)
        pixels = pixel_bounds(self.processor.image_processor, max_pixels)
        memory = vllm_memory_args(on_gpu, gpu_memory_utilization, kv_cache_gib)
        if not on_gpu:
            # A prompt prefilled in pieces makes vLLM rewind its per-request generator, which
            # CPU generators cannot ("CPU Generator does not use offset"): whole prefills only.
            memory.update(enable_chunked_prefill=False, max_num_batched_tokens=max(max_model_len, 8192))
        self.llm = vllm.LLM(
            model=model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=vllm_enforce_eager(enforce_eager, on_gpu),
            seed=0,
            logprobs_mode="processed_logprobs",
            limit_mm_per_prompt={"image": images_per_prompt, "video": 0},
            mm_processor_kwargs=pixels,
            enable_sleep_mode=sleep and on_gpu,
            **memory,
            **engine_layout_args(tensor_parallel_size, weight_transport, on_gpu),
        )
        self.sleeps = sleep and on_gpu
        self.schedule = SleepSchedule(sleep_level)
        config = self.llm.llm_engine.model_config.hf_config
        self.image_token = getattr(config, "image_token_id", None)
        self.suppressed = [t for t in (self.image_token, getattr(config, "video_token_id", None)) if t is not None]
        self._pending: list[tuple[str, torch.Tensor]] = []
        if self.sleeps:
            self.llm.sleep(level=self.schedule.start())

    def generate(
        self, prompts: Sequence[EncodedPrompt], sampling: SamplingConfig, seeds: Sequence[Sequence[int]]
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        if any(p.images is None for p in prompts):
            raise ValueError("the vLLM engine needs each prompt's images (encode_prompts keeps them)")
        # A request per completion with its own seed: with n samples of one seed, vLLM seeds
        # sample j with seed + j, which another prompt's seed may be (identical prompts then
        # drew identical completions).
        requests, params = [], []
        for prompt, completion_seeds in zip(prompts, seeds):
            ids = collapse_placeholders(prompt.input_ids, self.image_token) if self.image_token else prompt.input_ids
            request = {"prompt_token_ids": ids}
            if prompt.images:
                request["multi_modal_data"] = {"image": list(prompt.images)}
            for seed in completion_seeds:
                requests.append(request)
                params.append(
                    SamplingParams(
                        n=1,
                        temperature=sampling.temperature if sampling.do_sample else 0.0,  # 0: greedy (evaluation)
                        top_p=sampling.top_p,
                        top_k=0,
                        max_tokens=sampling.max_new_tokens,
                        logprobs=0,
                        seed=seed,
                        logit_bias=dict.fromkeys(self.suppressed, SUPPRESS),
                        skip_special_tokens=True,
                    )
                )
        if self.sleeps:
            self._wake(self.schedule.before_generate())
        try:
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        finally:
            if self.sleeps:
                self.llm.sleep(level=self.schedule.after_generate())
        return grouped([self._completion(output.outputs[0]) for output in outputs], seeds)

    def _completion(self, sample) -> Completion:
        token_ids = list(sample.token_ids)
        logprobs = None
        if sample.logprobs is not None:
            logprobs = [step[token].logprob for token, step in zip(token_ids, sample.logprobs)]
        stopped = sample.finish_reason == "stop"
        return Completion(token_ids, sample.text, "stop" if stopped else "length", logprobs)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        self._pending.extend(named_tensors)  # loaded together when the sync completes

    def finish_sync(self) -> None:
        weights, self._pending = self._pending, []
        self._before_sync()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self._after_sync()

    # vLLM's weight-transfer engine (`rollout.weight_transport` ipc or nccl) receives them.
    def init_transfer(self, init_info: dict) -> None:
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    def start_transfer(self) -> None:
        self._before_sync()
        self.llm.start_weight_update()

    def receive(self, update_info: dict) -> None:
        self.llm.update_weights({"update_info": update_info})

    def finish_transfer(self) -> None:
        self.llm.finish_weight_update()
        self._after_sync()

    def _before_sync(self) -> None:
        if self.sleeps:
            self._wake(self.schedule.before_sync())

    def _after_sync(self) -> None:
        # Nothing computed with the old weights may be served again.
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_mm_cache()
        self.schedule.after_sync()  # the weights stay awake: sampling comes next

    def _wake(self, tags: list[str]) -> None:
        if tags:
            self.llm.wake_up(tags=tags)


def engine_layout_args(tensor_parallel_size: int, weight_transport: str, on_gpu: bool) -> dict:
    """vLLM's arguments for its GPUs and its weight transport.

    >>> engine_layout_args(2, "nccl", True)
    {'tensor_parallel_size': 2, 'distributed_executor_backend': 'mp', 'weight_transfer_config': {'backend': 'nccl'}}
    >>> engine_layout_args(1, "object_store", False)
    {}
    """
    if not on_gpu and (tensor_parallel_size > 1 or weight_transport != "object_store"):
        raise ValueError(
            f"rollout.tensor_parallel_size={tensor_parallel_size}, rollout.weight_transport={weight_transport}: "
            "the engine is on the CPU (one process, weights through the object store)"
        )
    args: dict = {}
    if tensor_parallel_size > 1:
        # Workers as processes of this actor, on the GPUs Ray gave it (its own executor
        # would look for a placement group of its own).
        args.update(tensor_parallel_size=tensor_parallel_size, distributed_executor_backend="mp")
    if weight_transport != "object_store":
        args["weight_transfer_config"] = {"backend": weight_transport}
    return args


def keep_cpu_linear_weights() -> None:
    """On CPU, vLLM 0.31 packs every linear layer's weight into a oneDNN (or AMX) kernel at
    load time and drops the parameter; `reload_weights` then writes the new weights where no
    kernel reads them, and the engine goes on sampling from the old ones (found here: after
    a policy step and a sync its log-probs still matched the old weights to 1e-6). Its
    linear layers here use the weight parameter directly (`torch.nn.functional.linear`,
    vLLM's own fallback), so that reloaded weights are the ones that compute. Slower on CPU,
    where this engine serves tests and demos; GPUs never take this path."""
    from vllm.model_executor.layers import utils

    def plain_linear(layer: torch.nn.Module, remove_weight: bool) -> None:
        layer.cpu_linear = torch.nn.functional.linear

    utils.dispatch_cpu_unquantized_gemm = plain_linear


def pixel_bounds(image_processor, max_pixels: int | None) -> dict[str, int]:
    """The image processor's pixel bounds as vLLM's Qwen-VL processor takes them (transformers
    5 keeps them in `size`), `max_pixels` (the config's) over the processor's own."""
    size = getattr(image_processor, "size", None) or {}
    low = size.get("shortest_edge", getattr(image_processor, "min_pixels", None))
    high = size.get("longest_edge", getattr(image_processor, "max_pixels", None))
    bounds = {"min_pixels": low, "max_pixels": max_pixels or high}
    return {key: value for key, value in bounds.items() if value}


def _model_max_length(model_path: str) -> int:
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(model_path).get_text_config()
    return int(getattr(text, "max_position_embeddings", 4096))

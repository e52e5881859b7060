"""16-bit training with float32 master weights kept by the optimizer, as DeepSpeed and
OpenRLHF keep them: the model holds and forwards its 16-bit weights, the same ones the
reference model and the rollout engines load and compute with; the optimizer steps float32
copies, whose rounding is written back into the model after every step.

Why float32 at all: a bf16 weight of ~0.02 is stored to steps of ~1e-4, and AdamW's
updates at SC-GRPO's learning rate are ~1e-6: applied to bf16 weights they round away
and the policy does not move. Why not forward the float32 copies under autocast (what
the policy did before): its forward then differed from the reference's and the engines'
(autocast keeps the residual stream and some ops in float32), so the KL was not 0 at step
0 and the importance ratio started off 1 by precision alone.

Gradients arrive in the model's dtype and are added into float32 gradients of the master
copies as each one is ready (a hook per parameter, so that the 16-bit gradients never all
exist at once), or, under DDP, once the last micro-batch has been reduced over the ranks
(DDP reads `.grad` itself). float16 adds a dynamic loss scaler (torch's `GradScaler` over
the master copies: a step whose gradients overflowed is skipped and the scale lowered);
float16 without master weights is refused (`check_precision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

SIXTEEN_BIT = ("bfloat16", "float16")


def check_precision(dtype: str, master_weights: bool) -> None:
    """Refuse the combinations that would train wrong: float16 needs a loss scaler, which
    works on float32 master gradients (torch cannot unscale float16 ones)."""
    if dtype == "float16" and not master_weights:
        raise ValueError(
            "model.dtype=float16 with model.master_weights=false cannot be loss-scaled (torch unscales float32 "
            "gradients only), and float16 gradients without loss scaling underflow to 0: keep "
            "model.master_weights=true or train in bfloat16"
        )


class MasterWeights:
    """Float32 copies of `parameters` (a 16-bit model's), which the optimizer steps."""

    def __init__(self, parameters: Sequence[torch.nn.Parameter], fold_as_ready: bool = True) -> None:
        self.model_params = list(parameters)
        self.params = [torch.nn.Parameter(p.detach().to(torch.float32, copy=True)) for p in self.model_params]
        self._hooks = []
        if fold_as_ready:
            for model_param, master in zip(self.model_params, self.params):
                self._hooks.append(model_param.register_post_accumulate_grad_hook(partial(_fold, master)))

    def close(self) -> None:
        """Stop folding the model's gradients (an engine that replaces this one keeps its own)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def fold(self) -> None:
        """Every 16-bit gradient not yet added into its float32 one (all of them under DDP)."""
        for model_param, master in zip(self.model_params, self.params):
            if model_param.grad is not None:
                _fold(master, model_param)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """The stepped float32 weights, rounded into the model's."""
        torch._foreach_copy_(self.model_params, self.params)

    def state(self) -> list[torch.Tensor]:
        return [master.detach() for master in self.params]

    @torch.no_grad()
    def load_state(self, values: Sequence[torch.Tensor]) -> None:
        if len(values) != len(self.params):
            raise ValueError(f"the checkpoint has {len(values)} master weights, the model {len(self.params)}")
        for master, value in zip(self.params, values):
            master.copy_(value)
        self.copy_to_model()


def _fold(master: torch.nn.Parameter, model_param: torch.nn.Parameter) -> None:
    grad = model_param.grad
    if master.grad is None:
        master.grad = grad.to(torch.float32)
    else:
        master.grad.add_(grad)
    model_param.grad = None  # the 16-bit gradient is done with


def loss_scaler(dtype: torch.dtype, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for float16 (its range underflows small gradients); None otherwise."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def fused_adamw_supported(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW takes these parameters: one kernel per step instead of the
    foreach path's full-size temporaries (a few bytes a parameter at the step's peak)."""
    devices = {p.device.type for p in params}
    dtypes = {p.dtype for p in params}
    return devices <= {"cuda", "cpu"} and dtypes <= {torch.float32, torch.bfloat16, torch.float16}

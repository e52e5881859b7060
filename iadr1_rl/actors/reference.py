"""ReferenceActor: the frozen initial policy, for the KL penalty."""

from __future__ import annotations

from .base import ModelActor


class ReferenceActor(ModelActor):
    """Computes reference log-probs of response tokens; never trained."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

"""What a sleeping vLLM engine holds between calls (`rollout.sleep`, `rollout.sleep_level`).

A step is: sample, (the policy trains), take the new weights, sample again. Asleep, the
engine's GPU memory is free for the policy; the schedule wakes only what the next call
needs:

- at level 1 the weights are copied to host memory when it sleeps and back when it wakes;
- at level 2 they are dropped (after sampling, since the sync that follows overwrites every
  one of them: copying them out and back would be wasted). vLLM keeps the model's buffers
  (rotary tables and the like, which no sync carries) and puts them back when the weights
  wake; every parameter then comes from the sync.

After a sync the weights stay awake (sampling is next); sampling wakes the KV cache. A
sample asked of dropped weights that no sync has refilled is refused: it would be noise.

>>> schedule = SleepSchedule(level=2)
>>> schedule.start(), schedule.before_generate(), schedule.after_generate()
(1, ['weights', 'kv_cache'], 2)
>>> schedule.before_sync(), schedule.after_sync(), schedule.before_generate()
(['weights'], None, ['kv_cache'])
"""

from __future__ import annotations

from .weight_sync import WeightSyncError

TAGS = ("weights", "kv_cache")


class SleepSchedule:
    def __init__(self, level: int = 1) -> None:
        if level not in (1, 2):
            raise ValueError(f"rollout.sleep_level must be 1 or 2, not {level}")
        self.level = level
        self.awake: set[str] = set(TAGS)
        self.weights_dropped = False

    def start(self) -> int:
        """The level to sleep at once loaded: 1 (the loaded weights sample the first step)."""
        self.awake = set()
        return 1

    def before_generate(self) -> list[str]:
        """The tags to wake before sampling (none: all awake)."""
        if self.weights_dropped:
            raise WeightSyncError(
                "rollout.sleep_level=2 dropped the engine's weights after its last sample and no weight sync has "
                "refilled them: sampling now would draw from garbage"
            )
        return self._wake(TAGS)

    def after_generate(self) -> int:
        """The level to sleep at after sampling."""
        self.awake = set()
        self.weights_dropped = self.level == 2
        return self.level

    def before_sync(self) -> list[str]:
        """The tags to wake before new weights load (the weights)."""
        return self._wake(("weights",))

    def after_sync(self) -> None:
        """Every parameter has been loaded: the weights are whole again, and stay awake."""
        self.weights_dropped = False

    def _wake(self, tags) -> list[str]:
        missing = [tag for tag in tags if tag not in self.awake]
        self.awake.update(missing)
        return missing

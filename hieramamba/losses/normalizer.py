"""The running loss normaliser every loss sum is divided by.

`TrainerOriginal.forward_backward`: the iteration's losses use the current value; after the
iteration (all micro-batches) it becomes 0.9 * norm + 0.1 * max(#positive valid points, 1).
"""

from __future__ import annotations

__all__ = ["LossNormalizer"]


class LossNormalizer:
    """Exponential moving average of the number of positive points per iteration."""

    def __init__(self, init: float, momentum: float = 0.9):
        if init <= 0:
            raise ValueError(f"loss_norm must be > 0, got {init}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"loss_norm momentum must be in [0, 1), got {momentum}")
        self.value = float(init)
        self.momentum = float(momentum)

    def update(self, num_positives: float) -> float:
        """Fold in one iteration's positive count (summed over micro-batches); returns the new value."""
        self.value = self.momentum * self.value + (1.0 - self.momentum) * max(float(num_positives), 1.0)
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
        self.momentum = float(state["momentum"])

"""Exponential backoff with jitter, for retrying LISTs and watches."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """`next_delay()` after each failure, `reset()` after a success."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.2  # +/- this fraction, so that many clients do not retry in step
    attempt: int = 0

    def next_delay(self) -> float:
        self.attempt += 1
        base = min(self.maximum, self.initial * self.factor ** (self.attempt - 1))
        return min(self.maximum, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self.attempt = 0

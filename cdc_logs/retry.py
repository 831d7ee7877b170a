"""Retry with exponential backoff: the one policy every retrying part uses.

`RetryPolicy.backoff(attempt)` is the delay before attempt `attempt + 1` (attempt counts from 1):
`initial * 2**(attempt-1)`, capped at `max_backoff_s`. `exhausted(attempt)` says when to give up
(`max_attempts` 0 = never).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    max_attempts: int = 10  # per failure streak; 0 = retry forever
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        # The exponent is capped so a long outage (attempt in the thousands) cannot overflow.
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(max(0, attempt - 1), 30)))

    def exhausted(self, attempt: int) -> bool:
        return self.max_attempts > 0 and attempt >= self.max_attempts

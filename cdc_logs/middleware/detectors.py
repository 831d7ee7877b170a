"""Streaming anomaly detectors for anomaly_detection, one per (table, group, field): each scores a
value against what came before it, then learns it. Their state is JSON (checkpointed with the
positions, stages.py).

- robust z-score: 0.6745 * (x - median) / MAD over the last `window_size` values (MAD: the median of
  the absolute deviations). A MAD of 0 (a constant signal) scores 0 for the median itself and
  infinity for anything else.
- EWMA: exponentially weighted mean and variance with weight `alpha` for the newest value; the score
  is (x - mean) / standard deviation.
- isolation forest (scikit-learn, the `iot` extra): a model trained on the last `window_size` values,
  retrained every `retrain_every` values; the score is the negated `score_samples` (higher: more
  anomalous, about 0.5 for normal values and up to 1), and `threshold` is the contamination, the
  share of training values the model sets its cut-off to call anomalous. The training values are in
  the state, so a restart retrains the very same model (fixed random_state).

Scores are absolute where a sign exists; a value is anomalous when its score is above the threshold
(isolation forest: when the model predicts an outlier). No value scores before `min_samples`.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind


def require_sklearn() -> None:
    """A CONFIG error naming the extra when scikit-learn is missing."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise CdcError(
            ErrorKind.CONFIG,
            "anomaly_detection algorithm isolation_forest needs scikit-learn, which is not installed",
            "pip install 'cdc-logs[iot]'",
        ) from None


class Detector(ABC):
    @abstractmethod
    def score(self, x: float) -> tuple[float, bool] | None:
        """(score, anomalous) of `x` against what came before (None while warming up); then learn x."""

    def score_many(self, xs: list[float]) -> list[tuple[float, bool] | None]:
        """`score` of each value in turn (a detector may do it faster, with the same results)."""
        return [self.score(x) for x in xs]

    @abstractmethod
    def to_json(self) -> Any: ...


class RobustZScore(Detector):
    def __init__(
        self, window_size: int, min_samples: int, threshold: float, values: list[float] | None = None
    ) -> None:
        self.values: deque[float] = deque(values or (), maxlen=window_size)
        self.min_samples, self.threshold = min_samples, threshold

    def score(self, x: float) -> tuple[float, bool] | None:
        out = None
        if len(self.values) >= self.min_samples:
            median = statistics.median(self.values)
            mad = statistics.median(abs(v - median) for v in self.values)
            z = (0.0 if x == median else math.inf) if mad == 0 else abs(0.6745 * (x - median) / mad)
            out = (z, z > self.threshold)
        self.values.append(x)
        return out

    def to_json(self) -> Any:
        return list(self.values)


class Ewma(Detector):
    def __init__(
        self, alpha: float, min_samples: int, threshold: float, state: list[Any] | None = None
    ) -> None:
        self.alpha, self.min_samples, self.threshold = alpha, min_samples, threshold
        self.n, self.mean, self.var = (
            (int(state[0]), float(state[1]), float(state[2])) if state else (0, 0.0, 0.0)
        )

    def score(self, x: float) -> tuple[float, bool] | None:
        out = None
        if self.n >= self.min_samples:
            sd = math.sqrt(self.var)
            z = abs(x - self.mean) / sd if sd > 0 else (0.0 if x == self.mean else math.inf)
            out = (z, z > self.threshold)
        if self.n == 0:
            self.mean = x
        else:  # West's incremental form of the exponentially weighted mean and variance
            diff = x - self.mean
            increment = self.alpha * diff
            self.mean += increment
            self.var = (1 - self.alpha) * (self.var + diff * increment)
        self.n += 1
        return out

    def to_json(self) -> Any:
        return [self.n, self.mean, self.var]


class IsolationForestDetector(Detector):
    def __init__(
        self,
        window_size: int,
        min_samples: int,
        contamination: float,
        retrain_every: int,
        state: dict[str, Any] | None = None,
    ) -> None:
        require_sklearn()
        self.contamination, self.retrain_every, self.min_samples = contamination, retrain_every, min_samples
        state = state or {}
        self.values: deque[float] = deque(state.get("values", ()), maxlen=window_size)
        self.trained_on: list[float] | None = state.get("trained_on")
        self.since = int(state.get("since", 0))  # values learnt since the last training
        self.model: Any = self._train(self.trained_on) if self.trained_on is not None else None

    def _train(self, values: list[float]) -> Any:
        from sklearn.ensemble import IsolationForest

        model = IsolationForest(n_estimators=100, contamination=self.contamination, random_state=0)
        model.fit([[v] for v in values])
        return model

    def score(self, x: float) -> tuple[float, bool] | None:
        due = self.model is None or self.since >= self.retrain_every
        if due and len(self.values) >= self.min_samples:
            self.trained_on = list(self.values)
            self.model = self._train(self.trained_on)
            self.since = 0
        out = None
        if self.model is not None:
            raw = float(self.model.score_samples([[x]])[0])
            # predict() is -1 where score_samples < offset_ (the contamination's cut-off): one call
            out = (-raw, raw < float(self.model.offset_))
        self.values.append(x)
        self.since += 1
        return out

    def score_many(self, xs: list[float]) -> list[tuple[float, bool] | None]:
        """As `score` one by one, but each run of values up to the next retraining in one call."""
        out: list[tuple[float, bool] | None] = []
        i = 0
        while i < len(xs):
            due = self.model is None or self.since >= self.retrain_every
            if due and len(self.values) >= self.min_samples:
                self.trained_on = list(self.values)
                self.model = self._train(self.trained_on)
                self.since = 0
            if self.model is None:  # warming up: learn it, score nothing
                out.append(None)
                self.values.append(xs[i])
                self.since += 1
                i += 1
                continue
            run = xs[i : i + max(1, self.retrain_every - self.since)]
            cut = float(self.model.offset_)
            for x, raw in zip(run, self.model.score_samples([[x] for x in run]), strict=True):
                out.append((-float(raw), float(raw) < cut))
                self.values.append(x)
                self.since += 1
            i += len(run)
        return out

    def to_json(self) -> Any:
        return {"values": list(self.values), "trained_on": self.trained_on, "since": self.since}

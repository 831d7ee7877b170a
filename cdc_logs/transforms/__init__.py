"""Transforms applied between reader and sinks: filter, mask/hash PII, rename.

Each transform takes an event and returns it (possibly changed) or None to drop it. A dropped event's
position still moves the checkpoint, so filtering never pins the source log.
"""

from cdc_logs.transforms.base import Transform, apply_all

__all__ = ["Transform", "apply_all"]

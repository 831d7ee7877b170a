"""Offset stores: where each pipeline's committed source positions live (sqlite default, postgres, file)."""

from cdc_logs.offsets.base import OffsetStore, StoredOffset

__all__ = ["OffsetStore", "StoredOffset"]

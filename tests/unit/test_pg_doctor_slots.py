"""The Postgres doctor's invalidated-slots check on a shared server (readers/postgres/doctor.py)."""

from __future__ import annotations

from cdc_logs.readers.postgres.doctor import _lost_slots


def test_only_the_sources_own_lost_slot_fails_the_invalidated_slots_check() -> None:
    # On a shared server another pipeline's lost slot retains no WAL and is not this source's to drop.

    assert _lost_slots([], "mine").mark == "ok"
    others = _lost_slots(["theirs"], "mine")
    assert others.mark == "warn" and "theirs" in others.detail and "slots drop theirs" in (others.fix or "")
    assert _lost_slots(["theirs"], None).mark == "warn"
    own = _lost_slots(["theirs", "mine"], "mine")
    assert own.mark == "FAIL" and "slots drop mine" in (own.fix or "")

"""The warning a source capturing by polling logs says why: the failed checks (auto), or the config."""

from __future__ import annotations

from typing import Any

import pytest

import cdc_logs.readers.capture as capture
from cdc_logs.readers.capture import CaptureReader


def test_polling_warning_names_the_config_when_capture_poll_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(capture.log, "warning", lambda event, **kw: said.append((event, kw)))
    poller = object()
    reader = CaptureReader(
        "poll",
        source="src",
        log_reader=lambda: pytest.fail("capture: poll never builds the log reader"),
        poll_reader=lambda: poller,  # type: ignore[arg-type,return-value]
        tables=lambda: [],
        checks=lambda: pytest.fail("capture: poll runs no checks"),
        needed=frozenset(),
    )
    assert reader._choose() is poller
    ((event, fields),) = said
    assert event == "capturing by polling: some changes will not be seen"
    assert fields["because"] == ["capture: poll is set in the config"]

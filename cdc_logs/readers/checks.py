"""`Check`: one result of a reader's preflight checks (`readers/<source>/doctor.py`).

Every reader package has a doctor.py whose `check_source(cfg, position)` takes the source's config
and returns its checks; `cdc-logs doctor` prints them. A check that fails names the fix. A warning
does not fail the run: it names something that works but will surprise (a full scan per poll, keys
that VACUUM can renumber).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False  # ok, but `fix` says what to change before it bites

    @property
    def mark(self) -> str:
        return "FAIL" if not self.ok else "warn" if self.warning else "ok"


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, True, detail, fix, warning=True)


def missing_client(module: str, extra: str, what: str) -> Check | None:
    """A failing check naming `pip install 'cdc-logs[extra]'` when the optional client `module` is not
    installed (the event-bus sources' doctors), else None."""
    from cdc_logs.errors import CdcError
    from cdc_logs.extras import need

    try:
        need(module, extra, what)
    except CdcError as exc:
        return Check(f"{extra} client", False, exc.message, exc.hint)
    return None

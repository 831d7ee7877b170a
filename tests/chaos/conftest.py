"""`--kills N` (registered in tests/conftest.py): how many times each case of test_kill_paths.py
SIGKILLs `cdc-logs run` (default 5, what CI runs). A long run:
`pytest tests/chaos/test_kill_paths.py --kills 50` (or `scripts/test -k kill_paths --kills 50`)."""

import pytest

KILLS_DEFAULT = 5


def kills_option(config: pytest.Config) -> int:
    return max(1, int(config.getoption("kills", KILLS_DEFAULT)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A long run needs more than the suite's 300 s per test: about 40 s more per extra kill."""
    extra = max(0, kills_option(config) - KILLS_DEFAULT)
    if not extra:
        return
    for item in items:
        if item.path.name == "test_kill_paths.py":
            item.add_marker(pytest.mark.timeout(300 + 40 * extra))

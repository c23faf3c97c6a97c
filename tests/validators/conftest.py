"""With ``ANYCAST_REQUIRE_VALIDATORS=1`` (CI before any preview or deploy), a validator test that would skip fails instead.

On a developer machine without bird, nsd, caddy, cloud-init or nft these tests skip and say why; in CI a missing tool
must not turn "the rendered files pass the real validators" into "nothing was checked".
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

REQUIRE = os.environ.get("ANYCAST_REQUIRE_VALIDATORS", "") not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"ANYCAST_REQUIRE_VALIDATORS is set, so this may not skip: {reason}"

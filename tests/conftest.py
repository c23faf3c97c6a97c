"""Shared fixtures (the stacks as plain documents and as validated networks) and the CI rule: no test skips.

Under CI (``CI=true``, as GitHub Actions and .ci/run set it; or ``ANYCAST_REQUIRE_VALIDATORS=1``) a test that would
skip (a missing tool, not root, no network namespaces) fails instead, in every folder: in CI "not checked" must
never pass as "checked". A local run without CI=true still skips, with the reason (``-ra`` lists them).
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from infra.model import Network
from infra.model.stack import NETWORK_KEY, load_network, read_stack_config
from tests.helpers.environment import ci_requires_everything
from tests.helpers.tiers import is_slow

ROOT = Path(__file__).resolve().parent.parent
TEST_PASSWORD = "REDACTED-BGP-PASSWORD"  # a stand-in, never a real secret: golden files show where the password goes


@pytest.fixture
def dev_doc() -> dict[str, Any]:
    return copy.deepcopy(read_stack_config("dev")[NETWORK_KEY])


@pytest.fixture(scope="session")
def dev_network() -> Network:
    return load_network("dev")


@pytest.fixture(scope="session")
def prod_network() -> Network:
    return load_network("prod")


@pytest.fixture(scope="session")
def free_network() -> Network:
    return load_network("free")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and ci_requires_everything():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true, so this test may not skip: {reason}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests tests/helpers/tiers.py lists as slow: ``make check`` leaves them out."""
    for item in items:
        if is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)

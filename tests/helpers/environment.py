"""What a test needs from the machine (root, network namespaces, Debian tools), and why it cannot run here.

Every test that needs a tool skips through these helpers, with a reason naming what is missing and the command that
installs it. Under CI (``CI=true``, which GitHub Actions and .ci/run set, or the older ``ANYCAST_REQUIRE_VALIDATORS=1``)
tests/conftest.py turns every skip into a failure: in CI a missing tool must never turn "checked" into "not run".
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence

import pytest


def ci_requires_everything() -> bool:
    """True where no test may skip: CI=true (any case) or ANYCAST_REQUIRE_VALIDATORS set to anything but 0."""
    return os.environ.get("CI", "").lower() in ("true", "1") or os.environ.get("ANYCAST_REQUIRE_VALIDATORS", "") not in ("", "0")


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def needs_tools(*tools: str, install: str = "make debs") -> pytest.MarkDecorator:
    """A skip marker for tests that run ``tools``: the reason names the missing ones and how to install them."""
    missing = missing_tools(*tools)
    return pytest.mark.skipif(bool(missing), reason=f"missing tools: {', '.join(missing)} ({install} installs them)")


def lab_unavailable(tools: Sequence[str], needs: str, extra: Callable[[], str | None] | None = None) -> str | None:
    """Root, the Debian tools ``tools`` (``make debs``), ``extra()``'s own condition, and a namespace that really opens."""
    if os.geteuid() != 0:
        return f"{needs} needs root"
    missing = missing_tools(*tools)
    if missing:
        return f"missing tools: {', '.join(missing)} (make debs)"
    if extra is not None and (problem := extra()):
        return problem
    probe = "acl-pytest-probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"network namespaces are not available here: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


# The process-mode lab (tests/lab): the daemons it starts and the tools its checks call.
LAB_TOOLS = ("ip", "bird", "birdc", "nsd", "caddy", "gobgpd", "gobgp", "dig", "curl")
LAB_REASON = lab_unavailable(LAB_TOOLS, "the lab (network namespaces)")

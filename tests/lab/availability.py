"""Why the lab tests cannot run on this machine, or None: one check shared by every lab test module."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence


def lab_unavailable(tools: Sequence[str], needs: str, extra: Callable[[], str | None] | None = None) -> str | None:
    """Root, the Debian tools ``tools`` (``make debs``), ``extra()``'s own condition, and a namespace that really opens."""
    if os.geteuid() != 0:
        return f"{needs} needs root"
    missing = [t for t in tools if shutil.which(t) is None]
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

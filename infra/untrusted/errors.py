"""The one error the untrusted-input readers raise."""

from __future__ import annotations


class UntrustedInput(ValueError):
    """A file or answer this program refuses to read; ``str()`` is one line naming the source and the problem."""

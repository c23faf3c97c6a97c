"""Reading what others wrote: files named on the command line (Atlas results, ``pulumi stack output --json``) and
HTTP answers (RIPE Database, RPKI, RIPE Atlas). Bounded in size and depth, regular files only, strict UTF-8 and
strict JSON, checked against a schema; every refusal is one :class:`UntrustedInput` line naming the source and the
problem."""

from infra.untrusted.errors import UntrustedInput

__all__ = ["UntrustedInput"]

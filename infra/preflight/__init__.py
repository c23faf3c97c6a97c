"""``anycast preflight``: read-only checks of the accounts a first ``pulumi up`` needs (Vultr, AWS, RIPE, public DNS).

One module per provider; each returns :class:`~infra.preflight.rows.Row` objects and never prints. Nothing here creates
or changes anything: only GET/HEAD-style calls, RIPE's ``?dry-run`` and IAM's policy simulation.
"""

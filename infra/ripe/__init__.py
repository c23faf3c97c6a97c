"""RIPE Database route objects and RPKI ROAs for the network's prefixes: a REST client, a plan/apply engine,
the ``anycast ripe`` commands, and a Pulumi dynamic resource (``infra.ripe.resource``, imported on demand so the
CLI does not pay for ``import pulumi``)."""

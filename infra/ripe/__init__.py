"""RIPE Database route objects and RPKI ROAs for the network's prefixes: a REST client and a plan/apply engine.

The ``anycast ripe`` commands are in ``infra.cli.ripe``; the Pulumi dynamic resource is ``infra.components.ripe_routes``
(imported only by the program, so the CLI does not pay for ``import pulumi``)."""

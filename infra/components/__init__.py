"""Pulumi components: the only modules of ``infra`` that import ``pulumi`` (tests/unit/test_layout.py checks it).

Everything they need to decide is computed by pure code (``infra.model``, ``infra.derived.facts``, ``infra.derived.outputs``,
``infra.derived.georules``, ``userdata.render``), which the CLI, the lab and the policy pack share without a Pulumi engine.
"""

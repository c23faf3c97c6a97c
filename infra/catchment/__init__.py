"""Catchment: which PoP serves which part of the world (RIPE Atlas or the lab), a map, and tuning advice.

Pure analysis (``results``, ``analysis``, ``worldmap``, ``advice``) plus the RIPE Atlas REST client (``atlas``);
the command is ``infra/cli/catchment.py`` and the lab's probes are ``lab/scenarios/catchment.py``. See docs/catchment.md.
"""

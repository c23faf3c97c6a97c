"""Pure renderers: a validated Network in, the exact files every PoP boots with out. Never imports pulumi."""

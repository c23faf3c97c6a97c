"""docs/config.md is generated from the model; it must not drift from it."""

from __future__ import annotations

from infra.docs import DOC, render
from infra.model import Network


def test_config_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run `make docs` and commit docs/config.md"


def test_every_field_is_described() -> None:
    text = render()
    for name, info in Network.model_fields.items():
        assert info.description, name
        assert f"| `{info.alias or name}` |" in text

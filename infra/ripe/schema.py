"""The parts of RIPE Database REST answers the client reads, as pydantic models (ripe-database-documentation
``docs/03.RIPE-Database-Structure/11.REST-API-Data-model.md``: ``objects.object[].attributes.attribute[]`` with
``name`` and ``value`` strings). Other fields (``link``, ``source``, ``primary-key``, ``referenced-type``...) are
ignored; a wrong type in the fields used is refused with its JSON path."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from infra.untrusted.schema import Loose

# RPSL attribute names: a letter, then letters, digits, "-" and "_" (RFC 2622 2; RIPE's are lower case: "mnt-by").
AttrName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]


class Attribute(Loose):
    name: AttrName
    value: Annotated[str, Field(max_length=65536)] = ""


class Attributes(Loose):
    attribute: Annotated[list[Attribute], Field(min_length=1)]


class DbObject(Loose):
    attributes: Attributes


class Objects(Loose):
    object: list[DbObject] = Field(default_factory=list)


class Answer(Loose):
    objects: Objects = Field(default_factory=Objects)

"""Shared fixtures: the stacks as plain documents and as validated networks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from infra.model import Network
from infra.model.stack import NETWORK_KEY, load_network, read_stack_config

ROOT = Path(__file__).resolve().parent.parent
TEST_PASSWORD = "REDACTED-BGP-PASSWORD"  # a stand-in, never a real secret: golden files show where the password goes


@pytest.fixture
def dev_doc() -> dict[str, Any]:
    return copy.deepcopy(read_stack_config("dev")[NETWORK_KEY])


@pytest.fixture(scope="session")
def dev_network() -> Network:
    return load_network("dev")


@pytest.fixture(scope="session")
def prod_network() -> Network:
    return load_network("prod")


@pytest.fixture(scope="session")
def free_network() -> Network:
    return load_network("free")

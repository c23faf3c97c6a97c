"""A rendered prod bird.conf with a chosen password, and deliberately bad variants of it: shared by the policy's
property tests (tests/unit/test_policy_bird.py) and the real-BIRD check (tests/validators/test_bird_password.py)."""

from __future__ import annotations

from infra.model import Network
from infra.model.stack import load_network
from userdata.render import render_bird

NETWORK: Network = load_network("prod")
POP = NETWORK.pop("ams")
GOOD_EXPORT = "export filter export_upstream4;"
GUARD = "if ! (net ~ ANYCAST_V4) then reject;"
PLACEHOLDER = "PLACEHOLDER-PASSWORD"
TEMPLATE = render_bird(NETWORK, POP, PLACEHOLDER)
# A password that closes its string and adds a channel exporting everything: BIRD accepts the result.
INJECTION = 'x"; ipv4 multicast { import none; export all; }; password "y'


def variants(conf: str) -> dict[str, str]:
    """Deliberately bad versions of a good rendered bird.conf (each replaces text outside the password line)."""
    assert conf.count(GOOD_EXPORT) == 1 and conf.count(GUARD) == 1
    return {
        "export all": conf.replace(GOOD_EXPORT, "export all;"),
        "no export": conf.replace(GOOD_EXPORT, ""),
        "no guard": conf.replace(GUARD, ""),
        "foreign prefix": conf.replace("define ANYCAST_V4 = [ ", "define ANYCAST_V4 = [ 198.51.100.0/24, "),
        "where with or": conf.replace(GOOD_EXPORT, "export where net ~ ANYCAST_V4 || net.len > 0;"),
    }


def with_password(pw: str) -> str:
    """The rendered bird.conf with ``pw`` written between the quotes verbatim, as a template without any escaping
    would: the renderer refuses control characters, but the policy must not rely on the renderer."""
    assert TEMPLATE.count(f'password "{PLACEHOLDER}";') == 2
    return TEMPLATE.replace(f'password "{PLACEHOLDER}";', f'password "{pw}";')

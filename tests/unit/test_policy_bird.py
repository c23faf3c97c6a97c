"""The policy pack's bird.conf reader cannot be blinded by the BGP password (issue 14, part 2).

Generated passwords (hypothesis) are rendered by the real template into bird.conf; a good config must pass and every
deliberately bad variant (``export all``, no export statement, no prefix guard, a foreign prefix) must be flagged,
whatever the password holds. tests/validators/test_bird_password.py checks a sample against the real ``bird``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.model import ConfigError
from infra.model.stack import load_network
from policies.bird import BirdSyntaxError, bgp_exports, bird_conf_from_user_data, export_problems, tokenize
from tests.helpers.bird_conf import INJECTION, NETWORK, POP, TEMPLATE, variants, with_password
from userdata.render import check_password, render_bird

ALLOWED: list[Any] = [NETWORK.prefixes.ipv4, NETWORK.prefixes.ipv6]
# Characters that end strings, comments and blocks in BIRD's lexer, weighted so that most passwords hold several.
HOSTILE = "}{#;/*\"\\'\n\t =[]()!~"
SETTINGS = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _model_accepts(pw: str) -> bool:
    try:
        check_password(pw)
    except ConfigError:
        return False
    return True


printable = st.characters(min_codepoint=33, max_codepoint=126)
# What the model accepts: printable ASCII without space, '"' and '\' (userdata.render.check_password), up to 80 bytes.
model_passwords = st.text(st.one_of(st.sampled_from("}{#;/*'=[]()!~"), printable), min_size=1, max_size=80).filter(_model_accepts)
# What BIRD's string syntax can carry at all (conf/cf-lex.l: anything but '"' and a newline; NUL would cut it short).
carriable_passwords = st.text(st.one_of(st.sampled_from(HOSTILE.replace('"', "").replace("\n", "")),
                                        st.characters(exclude_characters='"\n\x00', exclude_categories=["Cs"])),
                              min_size=1, max_size=80)
# Anything at all, quotes and newlines included: the model refuses these, the policy must still never pass a leak.
any_passwords = st.text(st.one_of(st.sampled_from(HOSTILE), st.characters(exclude_categories=["Cs"])), min_size=1, max_size=80)


PLACEHOLDER_PROBLEMS = {name: export_problems(bad, ALLOWED) for name, bad in variants(TEMPLATE).items()}


def assert_policy_holds(pw: str, conf: str) -> None:
    strings = [t.text for t in tokenize(conf) if t.kind == "string"]
    assert strings.count(pw) == 2, "the password must be exactly one string token per BGP protocol"
    assert export_problems(conf, ALLOWED) == []
    for name, bad in variants(conf).items():
        found = export_problems(bad, ALLOWED)
        assert found, f"{name} passed the policy with password {pw!r}"
        # The verdict and its words do not depend on the password (so no message can repeat it).
        assert found == PLACEHOLDER_PROBLEMS[name]


@SETTINGS
@given(model_passwords)
def test_policy_holds_for_every_password_the_model_accepts(pw: str) -> None:
    assert_policy_holds(pw, render_bird(NETWORK, POP, pw))


@SETTINGS
@given(carriable_passwords)
def test_policy_holds_for_every_password_birds_quoting_can_carry(pw: str) -> None:
    assert_policy_holds(pw, with_password(pw))


@SETTINGS
@given(any_passwords)
def test_no_password_makes_a_leaking_config_pass(pw: str) -> None:
    conf = with_password(pw)
    for name, bad in variants(conf).items():
        assert export_problems(bad, ALLOWED), f"{name} passed the policy with password {pw!r}"


@pytest.mark.parametrize("pw", ["}", "#", "/*", "};}}}", "x}#", "a/*b", "{{{{", "';'", "*/", "#}\"\n"])
def test_old_blinding_passwords(pw: str) -> None:
    """The reader before this fix stripped `#...` and counted braces inside strings: each of these hid the export."""
    assert export_problems(variants(with_password(pw))["export all"], ALLOWED)


def test_a_quote_in_the_password_can_inject_a_channel_and_the_policy_sees_it() -> None:
    """BIRD accepts this bird.conf (tests/validators/test_bird_password.py runs it through `bird -p`): the password
    closes its string and adds an `ipv4 multicast` channel that exports everything. The model refuses '"'; if one got
    through anyway, the policy reads the tokens as BIRD does and flags the channel."""
    conf = with_password(INJECTION)
    found = export_problems(conf, ALLOWED)
    assert "protocol upstream4 channel ipv4 multicast: 'export all' announces whatever BIRD has" in found


# --- the tokenizer against conf/cf-lex.l ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "tokens"), [
    ('password "a\\";', [("word", "password"), ("string", "a\\"), ("punct", ";")]),  # no escapes: \ is a character
    ('x "#not a comment" # a comment "\ny', [("word", "x"), ("string", "#not a comment"), ("word", "y")]),
    ('"/* no comment */" /* "no string" */ z', [("string", "/* no comment */"), ("word", "z")]),
    ("'my-proto.1' { }", [("word", "my-proto.1"), ("punct", "{"), ("punct", "}")]),
    ("a != b !~ c [= 1 =] 1..5", [("word", "a"), ("punct", "!="), ("word", "b"), ("punct", "!~"), ("word", "c"),
                                  ("punct", "[="), ("word", "1"), ("punct", "=]"), ("word", "1..5")]),
    ("2001:db8::/48{48,64}", [("word", "2001:db8::"), ("punct", "/"), ("word", "48"), ("punct", "{"), ("word", "48"),
                              ("punct", ","), ("word", "64"), ("punct", "}")]),
])
def test_tokens(text: str, tokens: list[tuple[str, str]]) -> None:
    assert [(t.kind, t.text) for t in tokenize(text)] == tokens


@pytest.mark.parametrize(("text", "error"), [
    ('password "abc\n";', "line 1: unterminated string"),
    ('x;\npassword "abc', "line 2: unterminated string"),
    ("/* a /* b */", "line 1: comment nesting not supported"),
    ("a;\n/* never closed", "line 2: unterminated comment"),
    ("'bad sym'", "apostrophed symbol"),
    ("router id 1.2.3.4;\r\n", "line 1: unknown character '\\r'"),
    ("a; $", "unknown character '$'"),
])
def test_lexer_errors_like_bird(text: str, error: str) -> None:
    with pytest.raises(BirdSyntaxError, match=re.escape(error)):
        tokenize(text)


def test_an_unreadable_config_is_a_violation_that_never_quotes_the_secret() -> None:
    conf = with_password("s3cret\nrest")
    found = export_problems(conf, ALLOWED)
    assert found and "unterminated string" in found[0] and "s3cret" not in found[0]


# --- what the policy accepts as an export of the own prefixes only ---------------------------------------------------

SETS = "define ANYCAST_V4 = [ 192.0.2.0/24, 192.0.2.1/32 ];\n"
V4: list[Any] = [ipaddress.ip_network("192.0.2.0/24")]


def bgp(channel_body: str, extra: str = "", header: str = "up") -> str:
    return SETS + extra + f"protocol bgp {header} {{ local as 64500; neighbor 192.0.2.9 as 64501; ipv4 {{ import none; {channel_body} }}; }}\n"


@pytest.mark.parametrize(("conf", "problem"), [
    (bgp("export none;"), None),
    (bgp("export filter f;", "filter f { if ! (net ~ ANYCAST_V4) then reject; bgp_path.prepend(64500); accept; }"), None),
    (bgp("export filter f;", "filter f { if net !~ ANYCAST_V4 then reject; accept; }"), None),
    (bgp("export filter f;", "filter f { if net ~ ANYCAST_V4 then accept; reject; }"), None),
    (bgp("export filter f;", "filter f { reject; }"), None),  # a unicast PoP: exports nothing
    (bgp("export filter { if ! (net ~ ANYCAST_V4) then reject; accept; };"), None),
    (bgp("export where net ~ ANYCAST_V4 && bgp_path.len = 0;"), None),
    (bgp("export filter f; export limit 10 action block;", "filter f { if ! (net ~ ANYCAST_V4) then reject; accept; }"), None),
    (bgp(""), "channel ipv4 has no export statement"),
    (bgp("import all;"), "channel ipv4 has no export statement"),
    (SETS + "protocol bgp up { local as 64500; neighbor 192.0.2.9 as 64501; ipv4; }", "channel ipv4 has no export"),
    (SETS + "protocol bgp up { local as 64500; neighbor 192.0.2.9 as 64501; }", "no channel"),
    (bgp("export all;"), "'export all' announces whatever BIRD has"),
    (bgp("export where net ~ ANYCAST_V4 || true;"), "does not limit the routes to a prefix set"),
    (bgp("export where ! (net ~ ANYCAST_V4);"), "does not limit the routes to a prefix set"),
    (bgp("export filter nope;"), "filter nope is not defined"),
    (bgp("export filter f;", "filter f { if net ~ ANYCAST_V4 then reject; accept; }"), "can accept a route that no prefix set limits"),
    (bgp("export filter f;", "filter f { accept; if ! (net ~ ANYCAST_V4) then reject; }"), "can accept a route that no"),
    (bgp("export filter f;", "filter f { if net ~ ANYCAST_V4 then accept; else accept; }"), "can accept a route that no"),
    (bgp("export filter f;", "function g() { accept; }\nfilter f { g(); if ! (net ~ ANYCAST_V4) then reject; accept; }"),
     "can accept a route that no"),
    (bgp("export filter f;", "filter f { if ! (net ~ OTHER) then reject; accept; }"), "prefix set OTHER is not defined"),
    (bgp("export filter f;", "define OTHER = [ 0.0.0.0/0{0,32} ];\nfilter f { if ! (net ~ OTHER) then reject; accept; }"),
     "OTHER holds 0.0.0.0/0"),
    (bgp("export filter f;", "define N = [ 1, 2 ];\nfilter f { if ! (net ~ N) then reject; accept; }"), "N is not a set of prefixes"),
    (bgp("export in 192.0.2.0/24 all;"), "is not a form the policy can check"),
    (bgp("export none;", header="up from tmpl"), "built 'from' a template"),
    ('include "/etc/bird/extra.conf";\n' + bgp("export none;"), "'include' pulls in a file"),
])
def test_export_forms(conf: str, problem: str | None) -> None:
    found = export_problems(conf, V4)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0], found


def test_exports_are_listed_per_channel() -> None:
    conf = bgp("export filter f;", "filter f { if ! (net ~ ANYCAST_V4) then reject; accept; }")
    assert [(e.protocol, e.channel, e.statement, e.sets) for e in bgp_exports(conf)] == [("up", "ipv4", "filter f", ("ANYCAST_V4",))]


VOCABULARY = ["protocol", "bgp", "template", "from", "filter", "function", "define", "include", "ipv4", "ipv6",
              "multicast", "export", "import", "all", "none", "where", "limit", "if", "then", "else", "accept", "reject",
              "net", "~", "!~", "!", "&&", "||", "(", ")", "{", "}", "[", "]", ";", ",", "=", "ANYCAST_V4", "x",
              "192.0.2.0/24", "0.0.0.0/0", '"', '"s"', "'q'", "#", "/*", "*/", "\n", "64500"]


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=60), st.text(max_size=40))
def test_the_reader_never_crashes(words: list[str], noise: str) -> None:
    """Token soup and arbitrary text: a list of problems or none, never an exception (the pack must not crash)."""
    text = " ".join(words)
    for conf in (text, noise, text + noise, TEMPLATE + text):
        found = export_problems(conf, ALLOWED)
        assert isinstance(found, list) and all(isinstance(f, str) for f in found)


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.one_of(st.text(max_size=80), st.recursive(st.none() | st.integers() | st.text(max_size=10),
                                                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                                        st.sampled_from(["write_files", "path", "content", "encoding"]),
                                                        inner, max_size=3), max_leaves=12).map(str)))
def test_user_data_reader_never_crashes(user_data: str) -> None:
    assert bird_conf_from_user_data(user_data) is None or isinstance(bird_conf_from_user_data(user_data), str)


def test_every_rendered_pop_of_every_stack_passes() -> None:
    for stack in ("dev", "prod", "free"):
        network = load_network(stack)
        allowed = [p for p in (network.prefixes.ipv4, network.prefixes.ipv6) if p is not None]
        for pop in network.pops:
            assert export_problems(render_bird(network, pop, "p}#{;/*"), allowed) == [], (stack, pop.code)

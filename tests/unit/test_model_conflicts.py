"""Cross-field conflicts and redirected secrets, with generated inputs: each is refused with one line naming the field
(and the field it conflicts with), never a traceback; the near misses on the right side of each bound are accepted.

The base document is the dev stack plus two external PoPs (pops[3] hkg, pops[4] sin) and TLS on; hypothesis draws the
conflicting values (deterministically: derandomize, so a run is repeatable).
"""

from __future__ import annotations

import base64
import copy
import gzip
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.cli.main import main
from infra.model import ConfigError, Network, parse_network
from infra.model.regions import CONTINENTS, country_continents
from infra.model.schema import TRANSCONTINENTAL
from infra.model.stack import read_stack_config

FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None)

HKG: dict[str, Any] = {
    "code": "hkg", "provider": "external", "city": "Hong Kong", "country": "HK", "continent": "AS",
    "latitude": 22.3, "longitude": 114.2,
    "neighbor": {"asn": 64501, "ipv4": "198.51.100.1", "ipv6": "2001:db8:ffff:1::1", "multihop": 2},
    "unicast": {"ipv4": "198.51.100.10", "ipv6": "2001:db8:ffff:1::10"},
}
SIN: dict[str, Any] = {
    **HKG, "code": "sin", "city": "Singapore", "country": "SG", "latitude": 1.3, "longitude": 103.8,
    "neighbor": {"asn": 64502, "ipv4": "198.51.100.2", "ipv6": "2001:db8:ffff:2::1", "multihop": 2},
    "unicast": {"ipv4": "198.51.100.20", "ipv6": "2001:db8:ffff:2::10"},
}
OWN_ASN = 64500  # the dev stack's


def base() -> dict[str, Any]:
    doc = copy.deepcopy(read_stack_config("dev")["anycast:network"])
    doc["pops"] += [copy.deepcopy(HKG), copy.deepcopy(SIN)]
    return doc


def refused(doc: dict[str, Any]) -> list[str]:
    """The error lines of a document that must fail: ConfigError only (pytest.raises lets anything else through as a
    failure with its traceback), one line per problem."""
    with pytest.raises(ConfigError) as caught:
        parse_network(doc, source="Pulumi.test.yaml")
    lines = caught.value.errors
    assert lines and all("\n" not in line and len(line) < 400 for line in lines), lines
    return lines


def assert_refused(doc: dict[str, Any], field: str, *fragments: str) -> None:
    lines = refused(doc)
    match = [line for line in lines if line.startswith(f"{field}: ")]
    assert match, (field, lines)
    for fragment in fragments:
        assert fragment in match[0], (fragment, match[0])


def test_base_document_is_valid() -> None:
    net = parse_network(base())
    assert [p.code for p in net.pops] == ["ams", "ewr", "sao", "hkg", "sin"] and net.tls.enabled


# --- addresses shared between PoPs -----------------------------------------------------------------------------

@FEW
@given(fam=st.sampled_from(["ipv4", "ipv6"]), host=st.integers(min_value=30, max_value=250))
def test_two_pops_on_one_unicast_address(fam: str, host: int) -> None:
    doc = base()
    addr = f"198.51.100.{host}" if fam == "ipv4" else f"2001:db8:ffff:3::{host:x}"
    doc["pops"][3]["unicast"][fam] = addr
    doc["pops"][4]["unicast"][fam] = addr
    assert_refused(doc, f"pops[4].unicast.{fam}", f"is also pops[3].unicast.{fam} (hkg)",
                   "each PoP needs its own address")


@FEW
@given(fam=st.sampled_from(["ipv4", "ipv6"]), other=st.sampled_from([3, 4]))
def test_neighbour_on_another_pops_address(fam: str, other: int) -> None:
    doc = base()
    me = 7 - other  # the other external PoP
    doc["pops"][me]["neighbor"][fam] = doc["pops"][other]["unicast"][fam]
    code = doc["pops"][other]["code"]
    assert_refused(doc, f"pops[{me}].neighbor.{fam}", f"is pops[{other}].unicast.{fam} ({code}), a PoP of this network")


# --- prefixes ----------------------------------------------------------------------------------------------------

@FEW
@given(fam=st.sampled_from(["ipv4", "ipv6"]), data=st.data())
def test_too_short_prefix(fam: str, data: st.DataObject) -> None:
    doc = base()
    if fam == "ipv4":
        length = data.draw(st.integers(min_value=1, max_value=15))
        net = ipaddress.ip_network(f"192.0.2.0/{length}", strict=False)
    else:
        length = data.draw(st.integers(min_value=3, max_value=28))
        net = ipaddress.ip_network(f"2001:db8:1000::/{length}", strict=False)
    doc["prefixes"][fam] = str(net)
    assert_refused(doc, f"prefixes.{fam}", f"{net} is shorter than /{16 if fam == 'ipv4' else 29}")


@FEW
@given(iface=st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True), where=st.sampled_from(["prefix", "monitoring"]))
def test_zone_id_in_a_prefix(iface: str, where: str) -> None:
    doc = base()
    if where == "prefix":
        doc["prefixes"]["ipv6"] = f"2001:db8:1000::%{iface}/48"
        assert_refused(doc, "prefixes.ipv6", "has a zone id")
    else:
        doc["admin"]["monitoringCidrs"] = [f"2001:db8:fffe::%{iface}/64"]
        assert_refused(doc, "admin.monitoringCidrs[0]", "has a zone id")


def test_shortest_allowed_prefixes_are_accepted() -> None:
    doc = base()
    doc["prefixes"] = {"ipv4": "203.0.0.0/16", "ipv6": "2001:db8::/29"}
    doc["service"] = {"ipv4": "203.0.113.1", "ipv6": "2001:db8:1000::1"}
    # the external PoPs' IPv6 addresses are inside 2001:db8::/29: move them to 3fff::/20 (RFC 9637)
    for i, pop in ((3, doc["pops"][3]), (4, doc["pops"][4])):
        pop["unicast"]["ipv6"] = f"3fff:0:ffff:{i}::10"
        pop["neighbor"]["ipv6"] = f"3fff:0:ffff:{i}::1"
    assert parse_network(doc).prefixes.ipv4 == ipaddress.ip_network("203.0.0.0/16")


# --- communities -------------------------------------------------------------------------------------------------

@FEW
@given(low=st.integers(min_value=0, max_value=65535), pop=st.sampled_from([0, 3]))
def test_well_known_community(low: int, pop: int) -> None:
    doc = base()
    doc["pops"][pop]["announce"] = {"communities": [f"65535:{low}"]}
    named = {65281: "NO_EXPORT", 65282: "NO_ADVERTISE", 65283: "NO_EXPORT_SUBCONFED", 666: "BLACKHOLE",
             0: "GRACEFUL_SHUTDOWN"}
    assert_refused(doc, f"pops[{pop}].announce.communities[0]", f"'65535:{low}' is",
                   named.get(low, "well-known"), "remove it")


PEER = st.integers(min_value=1, max_value=65534).filter(lambda a: a not in (OWN_ASN, 23456))
# (announce document for peer X, the field at fault, fragments of its message naming the other field)
CONFLICTS = {
    "only_to_and_do_not_announce": (lambda x: {"onlyTo": [x], "communities": [f"64600:{x}"]},
                                    "announce.communities[0]", ["contradicts announce.onlyTo[0]", "nowhere"]),
    "announce_only_and_do_not_announce": (
        lambda x: {"communities": ["20473:6000", f"64699:{x}", f"64600:{x}"]},
        "announce.communities[2]", ["contradicts announce.communities[1]", "nowhere"]),
    "only_to_twice": (lambda x: {"onlyTo": [x, x]}, "announce.onlyTo[1]", ["is already announce.onlyTo[0]"]),
    "community_twice": (lambda x: {"communities": [f"64601:{x}", f"64601:{x}"]}, "announce.communities[1]",
                        ["is already announce.communities[0]"]),
    "only_to_own_asn": (lambda x: {"onlyTo": [x, OWN_ASN]}, "announce.onlyTo[1]", ["the network's own ASN (asn)"]),
    "only_to_and_its_community": (lambda x: {"onlyTo": [x], "communities": [f"64699:{x}"]},
                                  "announce.communities[0]", ["repeats announce.onlyTo[0]"]),
    "only_to_and_no_export": (lambda x: {"onlyTo": [x], "communities": ["20473:6000"]},
                              "announce.communities[0]", ["repeats announce.onlyTo"]),
    "no_export_alone": (lambda x: {"communities": ["20473:6000", f"64600:{x}"]}, "announce.communities[0]",
                        ["announced to no one else", "announce.onlyTo"]),
    "only_without_no_export": (lambda x: {"communities": [f"64699:{x}"]}, "announce.communities[0]",
                               ["works only with '20473:6000'"]),
    "two_prepends_to_all": (lambda x: {"communities": ["20473:6001", f"64600:{x}", "20473:6003"]},
                            "announce.communities[2]", ["contradicts announce.communities[0] '20473:6001'"]),
    "two_prepends_to_one_peer": (lambda x: {"communities": [f"64601:{x}", f"64603:{x}"]}, "announce.communities[1]",
                                 ["contradicts announce.communities[0]", "one prepend count to AS"]),
}


@FEW
@given(kind=st.sampled_from(sorted(CONFLICTS)), peer=PEER)
def test_contradictory_or_repeated_vultr_communities(kind: str, peer: int) -> None:
    announce, field, fragments = CONFLICTS[kind]
    doc = base()
    doc["pops"][0]["announce"] = announce(peer)
    assert_refused(doc, f"pops[0].{field}", *fragments)


@FEW
@given(peer=PEER, other=PEER)
def test_consistent_vultr_communities_are_accepted(peer: int, other: int) -> None:
    doc = base()
    doc["pops"][0]["announce"] = {"onlyTo": sorted({peer, other}), "communities": ["20473:6002", "20473:6601"]}
    doc["pops"][1]["announce"] = {"communities": ["20473:6000", f"64699:{peer}", f"64602:{peer}"]}
    assert parse_network(doc).pops[0].announce.only_to == sorted({peer, other})


# --- admin -------------------------------------------------------------------------------------------------------

@FEW
@given(fam=st.sampled_from([4, 6]), data=st.data())
def test_monitoring_cidr_too_wide(fam: int, data: st.DataObject) -> None:
    doc = base()
    if fam == 4:
        net = ipaddress.ip_network(f"203.0.113.0/{data.draw(st.integers(min_value=0, max_value=15))}", strict=False)
    else:
        net = ipaddress.ip_network(f"2001:db8:fffe::/{data.draw(st.integers(min_value=0, max_value=31))}", strict=False)
    doc["admin"]["monitoringCidrs"] = ["203.0.113.64/28", str(net)]
    assert_refused(doc, "admin.monitoringCidrs[1]", f"{net} is wider than /{16 if fam == 4 else 32}",
                   "exporter and status ports")


# --- TLS: the challenge zone, the number and length of names -----------------------------------------------------

LABEL = st.from_regex(r"[a-z][a-z0-9]{0,20}", fullmatch=True)


@FEW
@given(label=LABEL, explicit=st.booleans())
def test_zone_inside_the_challenge_zone(label: str, explicit: bool) -> None:
    doc = base()
    challenge = f"{label}.example.com" if explicit else "acme.example.com"
    if explicit:
        doc["tls"]["challengeZone"] = challenge
    doc["dns"]["zone"] = f"cdn.{challenge}"
    which = "tls.challengeZone" if explicit else "the default tls.challengeZone"
    assert_refused(doc, "dns.zone", f"and {which} '{challenge}' are the same zone or one inside the other")


@FEW
@given(label=LABEL, field=st.sampled_from(["httpNames", "nameservers"]))
def test_name_inside_the_challenge_zone(label: str, field: str) -> None:
    doc = base()
    doc["dns"][field] = [*doc["dns"][field], f"{label}.acme.example.com"]
    last = len(doc["dns"][field]) - 1
    assert_refused(doc, f"dns.{field}[{last}]", "is inside the default tls.challengeZone 'acme.example.com'")


@FEW
@given(count=st.integers(min_value=101, max_value=300), via=st.sampled_from(["names", "httpNames"]))
def test_more_names_than_lets_encrypt_allows(count: int, via: str) -> None:
    doc = base()
    if via == "names":
        doc["tls"]["names"] = [f"n{i}.cdn.example.com" for i in range(count)]
        field = "tls.names"
    else:  # the default names: the zone, www.<zone> and every HTTP name
        doc["dns"]["httpNames"] = [f"h{i}.example.com" for i in range(count - 2)]
        field = "dns.httpNames"
    assert_refused(doc, field, f"the certificate would carry {count} names", "allows 100")


def test_one_hundred_names_are_accepted() -> None:
    doc = base()
    doc["tls"]["names"] = [f"n{i}.cdn.example.com" for i in range(100)]
    assert len(parse_network(doc).tls_names) == 100


@FEW
@given(length=st.integers(min_value=237, max_value=253), in_zone=st.booleans())
def test_challenge_name_longer_than_dns_allows(length: int, in_zone: bool) -> None:
    doc = base()
    suffix = ".cdn.example.com" if in_zone else ".example.com"
    room = length - len(suffix) + 1  # each label takes its length plus one dot
    labels = []
    while room > 64:
        labels.append("a" * 63)
        room -= 64
    if room == 1:  # no empty label: move one character from the label before
        labels[-1], room = "a" * 62, 2
    name = ".".join([*labels, "b" * (room - 1)]) + suffix
    assert len(name) == length
    doc["tls"]["names"] = [name]
    target = f"{name}.acme.example.com"
    assert len(target) > 253
    assert_refused(doc, "tls.names[0]", f"would point to a {len(target)}-character name",
                   "tls.challengeZone 'acme.example.com'")


# --- geography ---------------------------------------------------------------------------------------------------

COUNTRIES = sorted(country_continents())


@FEW
@given(country=st.sampled_from(COUNTRIES), data=st.data())
def test_external_pop_continent_contradicts_country(country: str, data: st.DataObject) -> None:
    actual = country_continents()[country]
    wrong = [c for c in CONTINENTS if c != actual and c not in TRANSCONTINENTAL.get(country, ())]
    continent = data.draw(st.sampled_from(wrong))
    doc = base()
    doc["pops"][3].update(country=country, continent=continent)
    assert_refused(doc, "pops[3].continent", f"'{continent}' contradicts country '{country}'",
                   f"Route53 places in {actual}")


def test_transcontinental_country_takes_either_continent() -> None:
    doc = base()
    doc["pops"][3].update(country="TR", continent="EU", city="Istanbul")
    assert parse_network(doc).pops[3].continent == "EU"


# --- secrets cannot be redirected --------------------------------------------------------------------------------

# Every credential this project, its CI (.github/workflows) or its providers read from the environment.
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "VULTR_API_KEY", "RIPE_API_KEY",
               "RIPE_RPKI_API_KEY", "RIPE_ATLAS_KEY", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE",
               "GITHUB_TOKEN", "ANYCAST_LAB_BGP_PASSWORD")
BGP_ENV = "ANYCAST_BGP_PASSWORD"


@FEW
@given(name=st.one_of(st.sampled_from(CREDENTIALS),
                      st.from_regex(r"[A-Z_][A-Z0-9_]{0,40}", fullmatch=True).filter(
                          lambda n: n != BGP_ENV and not n.startswith(BGP_ENV + "_"))))
def test_password_env_cannot_name_another_credential(name: str) -> None:
    doc = base()
    doc["bgp"] = {"passwordEnv": name}
    assert_refused(doc, "bgp.passwordEnv", "may not hold the BGP password", "ANYCAST_BGP_PASSWORD_<SUFFIX>")


def test_password_env_with_a_suffix_is_accepted() -> None:
    doc = base()
    doc["bgp"] = {"passwordEnv": "ANYCAST_BGP_PASSWORD_PROD"}
    assert parse_network(doc).bgp.password_env == "ANYCAST_BGP_PASSWORD_PROD"


@pytest.mark.parametrize("stack", ["prod", "dev", "free"])
def test_render_writes_only_the_bgp_password(stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Every credential variable set to its own marker: only the BGP password reaches the rendered files, and only
    bird.conf and user-data (where BIRD needs it)."""
    markers = {name: f"m4rker-{i}-{name.lower().replace('_', '-')}" for i, name in enumerate((*CREDENTIALS, BGP_ENV))}
    for name, marker in markers.items():
        monkeypatch.setenv(name, marker)
    out = tmp_path / "out"
    assert main(["render", "--stack", stack, "--out", str(out)]) == 0, capsys.readouterr().err
    files = {p.relative_to(out).as_posix(): p.read_text(encoding="utf-8") for p in sorted(out.rglob("*")) if p.is_file()}
    for rel, text in files.items():  # what cloud-init writes from the user data, gzip-compressed files included
        if rel.endswith("user-data.yaml"):
            files[rel] = text + "".join(gzip.decompress(base64.b64decode(f["content"])).decode() for f in
                                        yaml.safe_load(text)["write_files"] if f.get("encoding") == "gz+b64")
    network: Network = parse_network(read_stack_config(stack)["anycast:network"])
    assert len(files) > len(network.pops)
    found = {(rel, name) for rel, text in files.items() for name, marker in markers.items() if marker in text}
    holders = {rel for rel, name in found if name == BGP_ENV}
    assert {name for _, name in found} == {BGP_ENV}, sorted(found)
    assert {rel.split("/")[1] for rel in holders} == {"bird.conf", "user-data.yaml"}
    # external PoPs peer with their own provider, without Vultr's password
    assert {f"{p.code}/bird.conf" for p in network.anycast_pops if p.is_vultr} <= holders


def test_render_refuses_a_redirected_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    (tmp_path / "Pulumi.yaml").write_text("name: anycast\nruntime: python\n", encoding="utf-8")
    (tmp_path / "Pulumi.evil.yaml").write_text(doc.replace("    dns:\n", "    bgp:\n      passwordEnv: AWS_SECRET_ACCESS_KEY\n    dns:\n", 1), encoding="utf-8")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "m4rker-aws")
    monkeypatch.chdir(tmp_path)
    assert main(["render", "--stack", "evil", "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: Pulumi.evil.yaml: bgp.passwordEnv: 'AWS_SECRET_ACCESS_KEY' may not hold the BGP password")
    assert err.count("\n") == 1 and "m4rker" not in err and not (tmp_path / "out").exists()

"""Route53 geolocation rules (infra/derived/georules.py): the continent table, record-set generation and resolve()."""

from __future__ import annotations

import pytest

from infra.derived.georules import GeoRecordSet, geo_record_sets, resolve
from infra.model import Network
from infra.model.regions import continent_of, country_continents

UNICAST = {"sao": ("203.0.113.23", "2001:db8:5000:17::1"), "jnb": ("203.0.113.15", "2001:db8:5000:f::1")}


@pytest.mark.parametrize(("country", "continent"), [
    ("RU", "EU"), ("UA", "EU"), ("TR", "AS"), ("IL", "AS"), ("AE", "AS"), ("ZA", "AF"), ("EG", "AF"), ("MX", "NA"),
    ("BR", "SA"), ("AR", "SA"), ("US", "NA"), ("CA", "NA"), ("AU", "OC"), ("NZ", "OC"), ("JP", "AS"), ("IN", "AS"),
    ("DE", "EU"), ("GB", "EU"), ("NG", "AF"), ("KE", "AF"), ("PA", "NA"), ("AQ", "AN"),
])
def test_continent_membership_as_route53_lists_it(country: str, continent: str) -> None:
    assert continent_of(country) == continent
    assert continent_of(country.lower()) == continent


def test_continent_table_is_complete_and_uses_route53_codes() -> None:
    table = country_continents()
    assert len(table) >= 249
    assert set(table.values()) == {"AF", "AN", "AS", "EU", "NA", "OC", "SA"}
    assert all(len(c) == 2 and c.isupper() for c in table)
    assert continent_of("ZZ") is None


def _group(sets: list[GeoRecordSet[str]], name: str, rtype: str) -> list[GeoRecordSet[str]]:
    return [r for r in sets if r.name == name and r.type == rtype]


def test_prod_record_sets(prod_network: Network) -> None:
    sets = geo_record_sets(prod_network, UNICAST)
    names = prod_network.dns.nameservers + prod_network.dns.http_names
    assert len(sets) == len(names) * 2 * 3  # A and AAAA; default + SA + AF
    for name in names:
        for rtype in ("A", "AAAA"):
            group = _group(sets, name, rtype)
            assert [r.area for r in group] == ["*", "SA", "AF"]
            assert len({r.set_identifier for r in group}) == 3
            default = group[0]
            assert default.is_default and default.health_check is None
            assert default.values == ((str(prod_network.service.ipv4),) if rtype == "A" else (str(prod_network.service.ipv6),))
            sao = group[1]
            assert sao.pop == "sao" and sao.continent == "SA" and sao.country is None
            assert sao.values == ((UNICAST["sao"][0],) if rtype == "A" else (UNICAST["sao"][1],))
            assert sao.health_check == ("sao-v4" if rtype == "A" else "sao-v6")


def test_ipv6_only_network_has_no_a_records(free_network: Network) -> None:
    sets = geo_record_sets(free_network, {})
    assert {r.type for r in sets} == {"AAAA"}
    assert all(r.is_default for r in sets)


def test_country_areas_and_missing_family(dev_doc: dict) -> None:
    from infra.model import parse_network

    dev_doc["pops"][2]["geodns"] = ["BR", "AR"]
    net = parse_network(dev_doc)
    sets = geo_record_sets(net, {"sao": (None, "2001:db8:5000:17::1")})
    a = _group(sets, "ns1.example.com", "A")
    assert [r.area for r in a] == ["*"]  # no IPv4 for sao: its countries fall through to anycast
    aaaa = _group(sets, "ns1.example.com", "AAAA")
    assert [(r.country, r.set_identifier) for r in aaaa] == [("*", "default"), ("BR", "sao-br"), ("AR", "sao-ar")]


@pytest.fixture
def prod_a(prod_network: Network) -> list[GeoRecordSet[str]]:
    return _group(geo_record_sets(prod_network, UNICAST), "ns1.example.com", "A")


@pytest.mark.parametrize(("country", "pop"), [
    ("BR", "sao"), ("AR", "sao"), ("CL", "sao"), ("ZA", "jnb"), ("EG", "jnb"), ("NG", "jnb"),
    ("DE", None), ("US", None), ("MX", None), ("RU", None), ("TR", None), ("JP", None), (None, None), ("ZZ", None),
])
def test_resolve_by_area(prod_a: list[GeoRecordSet[str]], country: str | None, pop: str | None) -> None:
    answer = resolve(prod_a, country)
    assert answer is not None
    assert answer.pop == pop


def test_unhealthy_unicast_falls_back_to_default(prod_a: list[GeoRecordSet[str]]) -> None:
    for key in ("sao", "sao-v4", "sao-sa"):
        answer = resolve(prod_a, "BR", unhealthy={key})
        assert answer is not None and answer.is_default, key
    jnb = resolve(prod_a, "ZA", unhealthy={"sao"})
    assert jnb is not None and jnb.pop == "jnb"


def test_smallest_area_wins_and_falls_back_one_step() -> None:
    def rs(ident: str, check: str | None = None, **area: str) -> GeoRecordSet[str]:
        return GeoRecordSet(name="n.example.com", type="A", set_identifier=ident, values=(ident,), health_check=check,
                            pop=check, **area)

    group = [rs("default", country="*"), rs("na", "na", continent="NA"), rs("us", "us", country="US"),
             rs("wa", "wa", country="US", subdivision="WA")]
    assert resolve(group, "US", subdivision="WA").set_identifier == "wa"  # type: ignore[union-attr]
    assert resolve(group, "US", subdivision="OR").set_identifier == "us"  # type: ignore[union-attr]
    assert resolve(group, "US").set_identifier == "us"  # type: ignore[union-attr]
    assert resolve(group, "CA").set_identifier == "na"  # type: ignore[union-attr]
    assert resolve(group, "US", {"wa"}, subdivision="WA").set_identifier == "us"  # type: ignore[union-attr]
    assert resolve(group, "US", {"wa", "us"}, subdivision="WA").set_identifier == "na"  # type: ignore[union-attr]
    assert resolve(group, "US", {"wa", "us", "na"}, subdivision="WA").set_identifier == "default"  # type: ignore[union-attr]
    assert resolve(group, "FR").set_identifier == "default"  # type: ignore[union-attr]


def test_all_unhealthy_counts_as_all_healthy_and_no_default_gives_no_answer() -> None:
    group = [GeoRecordSet(name="n", type="A", set_identifier=c, values=(c,), continent=c, pop=c, health_check=c)
             for c in ("SA", "AF")]
    assert resolve(group, "BR", unhealthy={"SA", "AF"}).set_identifier == "SA"  # type: ignore[union-attr]
    assert resolve(group, "BR", unhealthy={"SA"}) is None  # falls to default, and there is none
    assert resolve(group, "DE") is None


def test_resolve_refuses_mixed_groups(prod_network: Network) -> None:
    with pytest.raises(ValueError, match="one \\(name, type\\)"):
        resolve(geo_record_sets(prod_network, UNICAST), "BR")

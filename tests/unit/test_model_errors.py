"""Bad network documents fail with one line naming the field and the fix: asserted by exact message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.model import ConfigError, parse_network

EXTERNAL: dict[str, Any] = {'code': 'hkg', 'provider': 'external', 'city': 'Hong Kong', 'country': 'HK', 'continent': 'AS', 'latitude': 22.3, 'longitude': 114.2, 'neighbor': {'asn': 64501, 'ipv4': '198.51.100.1', 'ipv6': '2001:db8:ffff:1::1'}, 'unicast': {'ipv4': '198.51.100.10', 'ipv6': '2001:db8:ffff:1::10'}}

# (case id, change applied to the dev stack document `d`, the exact error)
CASES = [
    ('ipv4_too_long', "d['prefixes']['ipv4']='192.0.2.0/25'; d['service']['ipv4']='192.0.2.1'",
     'prefixes.ipv4: 192.0.2.0/25 is longer than /24; the Internet drops IPv4 prefixes longer than /24'),
    ('ipv6_too_long', "d['prefixes']['ipv6']='2001:db8:1000::/56'",
     'prefixes.ipv6: 2001:db8:1000::/56 is longer than /48; the Internet drops IPv6 prefixes longer than /48'),
    ('host_bits', "d['prefixes']['ipv4']='192.0.2.1/24'",
     "prefixes.ipv4: '192.0.2.1/24' has host bits set; did you mean 192.0.2.0/24?"),
    ('not_a_prefix', "d['prefixes']['ipv4']='192.0.2.0/33'",
     "prefixes.ipv4: '192.0.2.0/33' is not an IPv4 prefix like 192.0.2.0/24"),
    ('bogon_v4', "d['prefixes']['ipv4']='10.1.2.0/24'; d['service']['ipv4']='10.1.2.1'",
     'prefixes.ipv4: 10.1.2.0/24 overlaps bogon space 10.0.0.0/8'),
    ('bogon_cgnat', "d['prefixes']['ipv4']='100.64.0.0/24'",
     'prefixes.ipv4: 100.64.0.0/24 overlaps bogon space 100.64.0.0/10'),
    ('bogon_v6_ula', "d['prefixes']['ipv6']='fd00:1::/48'",
     'prefixes.ipv6: fd00:1::/48 is outside global unicast space 2000::/3'),
    ('v6_6to4', "d['prefixes']['ipv6']='2002:c000:200::/48'",
     'prefixes.ipv6: 2002:c000:200::/48 overlaps bogon space 2002::/16'),
    ('service_v4_outside', "d['service']['ipv4']='198.51.100.1'",
     'service.ipv4: 198.51.100.1 is outside prefixes.ipv4 192.0.2.0/24'),
    ('service_v6_outside', "d['service']['ipv6']='2001:db8:2000::1'",
     'service.ipv6: 2001:db8:2000::1 is outside prefixes.ipv6 2001:db8:1000::/48'),
    ('service_without_prefix', "del d['prefixes']['ipv4']",
     'prefixes.ipv4: prefixes.ipv4 and service.ipv4 go together: set both or neither'),
    ('asn_zero', "d['asn']=0",
     'asn: AS0 is reserved (RFC 7607)'),
    ('asn_trans', "d['asn']=23456",
     'asn: AS23456 is AS_TRANS (RFC 6793)'),
    ('asn_65535', "d['asn']=65535",
     'asn: AS65535 is reserved (RFC 7300)'),
    ('asn_too_big', "d['asn']=4294967296",
     'asn: 4294967296 is not a 32-bit ASN (1-4294967294)'),
    ('private_asn_own', "d['asn']=65001",
     'asn: AS65001 is a private ASN; set asnSource: vultr-assigned if Vultr assigned it, or use your own public ASN'),
    ('public_asn_vultr_assigned', "d['asnSource']='vultr-assigned'",
     "asn: AS64500 is not private; with asnSource 'vultr-assigned' use the private ASN Vultr gave you (64512-65534 or 4200000000-4294967294)"),
    ('asn_string', "d['asn']='AS64500'",
     "asn: 'AS64500' is not a whole number"),
    ('prepend_private', "d['asn']=65534; d['asnSource']='vultr-assigned'; d['pops'][0]['announce']={'prepend':1}",
     'pops[0].announce.prepend: Vultr strips a private ASN, so prepending it does nothing; use communities 20473:6001-6003'),
    ('external_private', "d['asn']=65534; d['asnSource']='vultr-assigned'; d['pops'].append(EXTERNAL)",
     'pops[3].provider: an external PoP needs your own public ASN; a Vultr-assigned ASN works only inside Vultr'),
    ('duplicate_code', "d['pops'].append({'code':'ams','region':'fra'})",
     "pops[3].code: 'ams' is already used by pops[0]"),
    ('unknown_region', "d['pops'][1]['region']='amss'",
     "pops[1].region: 'amss' is not a Vultr region (ams, atl, blr, ... 33 in all, see infra/data/regions.json)"),
    ('missing_region', "del d['pops'][1]['region']",
     'pops[1].region: is required for a Vultr PoP: a region id such as ams (see infra/data/regions.json)'),
    ('unicast_without_geodns', "d['pops'][2]['geodns']=[]",
     'pops[2].geodns: a unicast PoP needs GeoDNS areas (e.g. [SA]) or no client ever reaches it'),
    ('anycast_with_geodns', "d['pops'][0]['geodns']=['EU']",
     'pops[0].geodns: only unicast PoPs have GeoDNS areas; anycast PoPs are reached by BGP'),
    ('bad_geodns_area', "d['pops'][2]['geodns']=['South America']",
     "pops[2].geodns: 'South America' is neither a continent (AF, AN, AS, EU, NA, OC, SA) nor a country code like BR"),
    ('bad_community', "d['pops'][0]['announce']={'communities':['20473:9999']}",
     "pops[0].announce.communities[0]: '20473:9999' is not a Vultr action community (20473:6000, 20473:6001-6003, 20473:6601, 20473:64609, 64600/64601/64602/64603/64609/64699:<peer-as>)"),
    ('malformed_community', "d['pops'][0]['announce']={'communities':['20473-6001']}",
     "pops[0].announce.communities[0]: '20473-6001' is not a standard community ASN:VALUE with both parts 0-65535"),
    ('blackhole_community', "d['pops'][0]['announce']={'communities':['20473:666']}",
     "pops[0].announce.communities[0]: '20473:666' blackholes the prefix at Vultr; an anycast PoP must not announce it"),
    ('prepend_4', "d['pops'][0]['announce']={'prepend':4}",
     'pops[0].announce.prepend: 4 is out of range: must be at most 3'),
    ('prepend_negative', "d['pops'][0]['announce']={'prepend':-1}",
     'pops[0].announce.prepend: -1 is out of range: must be at least 0'),
    ('one_anycast_pop', "d['pops']=d['pops'][1:]",
     'pops: an anycast network needs at least two anycast PoPs, found 1'),
    ('missing_dns', "del d['dns']",
     'dns: is required'),
    ('missing_service_ipv6', "del d['service']['ipv6']",
     'service.ipv6: is required'),
    ('misspelled_field', "d['pops'][0]['annnounce']={}",
     'pops[0].annnounce: is not a known field (check the spelling; see the field list in docs/config.md)'),
    ('mode_typo', "d['pops'][0]['mode']='anycats'",
     "pops[0].mode: 'anycats' is not one of 'anycast' or 'unicast'"),
    ('bad_code', "d['pops'][0]['code']='AMS-1'",
     "pops[0].code: 'AMS-1' must be 2-16 lowercase letters or digits, starting with a letter"),
    ('pops_not_list', "d['pops']='ams'",
     'pops: Input should be a valid list'),
    ('error_wait_inverted', "d['bgp']={'errorWaitMin':60,'errorWaitMax':5}",
     'bgp.errorWaitMin: 60 is more than errorWaitMax (5)'),
    ('hold_time_keepalive', "d['bgp']={'holdTime':6,'keepaliveTime':3}",
     'bgp.keepaliveTime: 3 is more than holdTime / 3 (6 / 3)'),
    ('ns_inside_zone', "d['dns']['nameservers']=['ns1.cdn.example.com']",
     "dns.nameservers[0]: 'ns1.cdn.example.com' is inside the delegated zone 'cdn.example.com', where Route53 cannot answer with GeoDNS; use a name in 'example.com' outside 'cdn.example.com'"),
    ('ns_outside_parent', "d['dns']['nameservers']=['ns1.example.net']",
     "dns.nameservers[0]: 'ns1.example.net' is not in parentZone 'example.com'"),
    ('zone_not_child', "d['dns']['zone']='cdn.example.net'",
     "dns.zone: 'cdn.example.net' must be a subdomain of parentZone 'example.com'"),
    ('external_without_neighbor', "e=copy.deepcopy(EXTERNAL); del e['neighbor']; d['pops'].append(e)",
     "pops[3].neighbor: is required for an external PoP: its provider's BGP neighbour (asn, ipv4/ipv6)"),
    ('external_unicast_in_prefix', "e=copy.deepcopy(EXTERNAL); e['unicast']['ipv4']='192.0.2.10'; d['pops'].append(e)",
     'pops[3].unicast.ipv4: 192.0.2.10 is inside the anycast prefix 192.0.2.0/24; a unicast address must be reachable on its own'),
    ('external_neighbor_own_asn', "e=copy.deepcopy(EXTERNAL); e['neighbor']['asn']=64500; d['pops'].append(e)",
     "pops[3].neighbor.asn: AS64500 is the network's own ASN; the neighbour must be eBGP"),
    ('vultr_with_neighbor', "d['pops'][0]['neighbor']={'asn':64501,'ipv4':'198.51.100.1'}",
     'pops[0].neighbor: only external PoPs configure a neighbour; Vultr PoPs peer with AS64515'),
    ('bad_ssh_cidr', "d['admin']['sshCidrs']=['198.51.100.0/33']",
     "admin.sshCidrs[0]: '198.51.100.0/33' is not an IPv4 or IPv6 network like 198.51.100.0/24"),
    ('bad_ssh_key', "d['admin']['sshKeys']=['not a key']",
     "admin.sshKeys[0]: 'not a key' is not an OpenSSH public key (ssh-ed25519 AAAA...)"),
    ('ripe_without_maintainer', "d['ripe']={'manage':True}",
     'ripe.maintainer: is required when manage is true'),
    ('bad_mntner', "d['ripe']={'manage':True,'maintainer':'example'}",
     "ripe.maintainer: 'example' is not a mntner name (like EXAMPLE-MNT)"),
    ('only_to_vultr_only', "e=copy.deepcopy(EXTERNAL); e['announce']={'onlyTo':[174]}; d['pops'].append(e)",
     'pops[3].announce.onlyTo: is a Vultr feature (64699:<asn>); not available for external PoPs'),
]


@pytest.mark.parametrize(("case", "change", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_fails_with_one_clear_line(dev_doc: dict[str, Any], case: str, change: str, message: str) -> None:
    d = dev_doc
    exec(change, {"copy": copy, "EXTERNAL": EXTERNAL, "d": d})
    with pytest.raises(ConfigError) as err:
        parse_network(d)
    assert str(err.value) == message
    assert len(err.value.errors) == 1


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 25


def test_several_independent_errors_are_all_reported(dev_doc: dict[str, Any]) -> None:
    dev_doc["asn"] = "x"
    del dev_doc["dns"]
    with pytest.raises(ConfigError) as err:
        parse_network(dev_doc)
    assert err.value.errors == ["asn: 'x' is not a whole number", "dns: is required"]


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="network: must be a mapping of fields, got list"):
        parse_network([1, 2])

"""Strict scalar types for the network document: every string that reaches a rendered file is parsed, not trusted.

A value from the stack file ends up in bird.conf, the zone, nsd.conf, the Caddyfile, nftables.conf or the
cloud-config. So each string field has a type that accepts only what it means (a DNS name, a plain IP address, an
ISO country code, an OpenSSH public key, a Vultr plan id...) and refuses everything else with a message that names
the fix and never repeats a huge input in full. The renderers escape what they emit as a second line of defence.
Numbers are strict too (the model runs pydantic in strict mode): ``true`` is not an ASN and ``3`` is not an address.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import struct
import unicodedata
from functools import lru_cache
from importlib import resources
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Any

from pydantic import BeforeValidator

MAX_SHOWN = 40  # characters of a bad value quoted back in an error message

# A fullmatch everywhere: re.match(...$) accepts a trailing newline, which is how a name smuggles a second line.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME_RE = re.compile(rf"(?=.{{1,253}}\Z)(?:{_DNS_LABEL}\.)+[a-z]{{2,63}}")
_CODE_RE = re.compile(r"[a-z][a-z0-9]{1,15}")
_COMMUNITY_RE = re.compile(r"(\d{1,10}):(\d{1,10})")
_MNTNER_RE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,70}-MNT")
_ENV_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# The BGP password's variable: this name or this name plus a suffix, never another credential's variable (an edit
# to the stack file could otherwise copy AWS_SECRET_ACCESS_KEY or RIPE_API_KEY into every bird.conf that CI renders).
BGP_PASSWORD_ENV = "ANYCAST_BGP_PASSWORD"
_BGP_PASSWORD_ENV_RE = re.compile(rf"{BGP_PASSWORD_ENV}(_[A-Z0-9]{{1,32}})?")
_PLAN_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
# City names: letters of any script, spaces and the punctuation real names use (São Paulo, St. John's, Mexico City).
_TEXT_PUNCTUATION = set(" .,'-()/&")

# RFC 4253 section 6.6 key types that OpenSSH's authorized_keys accepts (sshd(8), AUTHORIZED_KEYS FILE FORMAT).
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def shown(value: Any) -> str:
    """``value`` for an error message: repr-quoted (control characters visible), cut to MAX_SHOWN characters."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit number"  # repr() of a huge int raises past Python's digit limit
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"... ({len(text)} characters)"
    if len(value) > MAX_SHOWN:
        return repr(value[:MAX_SHOWN]) + f"... ({len(value)} characters)"
    return repr(value)


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{shown(value)} is not {what}: write it as a string")
    return value


def _no_controls(value: str, what: str) -> str:
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise ValueError(f"{shown(value)} is not {what}: it contains a control character (newline, tab, NUL...)")
    return value


# --- names ------------------------------------------------------------------------------------------------------

def dns_name(value: Any) -> str:
    """A DNS host or zone name, lowercased, without the trailing dot: letters, digits and hyphens only."""
    text = _no_controls(_require_str(value, "a DNS name"), "a DNS name").lower()
    text = text[:-1] if text.endswith(".") else text
    if not _DNS_NAME_RE.fullmatch(text):
        raise ValueError(f"{shown(value)} is not a DNS name like cdn.example.com (letters, digits, hyphens, dots)")
    return text


def pop_code(value: Any) -> str:
    text = _require_str(value, "a PoP code")
    if not _CODE_RE.fullmatch(text):
        raise ValueError(f"{shown(value)} must be 2-16 lowercase letters or digits, starting with a letter")
    return text


def community(value: Any) -> str:
    text = _require_str(value, "a BGP community")
    m = _COMMUNITY_RE.fullmatch(text)
    if not m or int(m[1]) > 65535 or int(m[2]) > 65535:
        raise ValueError(f"{shown(value)} is not a standard community ASN:VALUE with both parts 0-65535")
    return text


def mntner(value: Any) -> str:
    text = _require_str(value, "a mntner name")
    if not _MNTNER_RE.fullmatch(text):
        raise ValueError(f"{shown(value)} is not a mntner name (like EXAMPLE-MNT)")
    return text


def env_var_name(value: Any) -> str:
    text = _require_str(value, "an environment variable name")
    if not _ENV_RE.fullmatch(text):
        raise ValueError(f"{shown(value)} is not an environment variable name like ANYCAST_BGP_PASSWORD")
    return text


def bgp_password_env(value: Any) -> str:
    text = env_var_name(value)
    if not _BGP_PASSWORD_ENV_RE.fullmatch(text):
        raise ValueError(f"{shown(value)} may not hold the BGP password: use {BGP_PASSWORD_ENV} or "
                         f"{BGP_PASSWORD_ENV}_<SUFFIX> (A-Z, 0-9), so the stack file cannot name another credential")
    return text


def free_text(value: Any, limit: int = 64) -> str:
    """A human name (a city, a descr): letters of any script, digits, spaces and . , ' - ( ) / & on one line."""
    text = _no_controls(_require_str(value, "text"), "one line of text")
    if not 1 <= len(text) <= limit or text != text.strip():
        raise ValueError(f"{shown(value)} must be 1-{limit} characters without leading or trailing spaces")
    bad = sorted({c for c in text if not (c.isalnum() or c in _TEXT_PUNCTUATION)})
    if bad:
        raise ValueError(f"{shown(value)} contains {''.join(bad)!r}: use letters, digits, spaces and . , ' - ( ) / &")
    return text


def ripe_descr(value: Any) -> str:
    return free_text(value, limit=80)


# --- geography --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def country_codes() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes (plus XK) as Route53 geolocation knows them (infra/data/geo_continents.json)."""
    data = json.loads(resources.files("infra").joinpath("data/geo_continents.json").read_text(encoding="utf-8"))
    return frozenset(data["countries"])


def country(value: Any) -> str:
    text = _require_str(value, "a country code")
    if text not in country_codes():
        hint = f"; did you mean {text.upper()}?" if text.upper() in country_codes() else ""
        raise ValueError(f"{shown(value)} is not an ISO 3166-1 alpha-2 country code like BR{hint}")
    return text


# --- addresses --------------------------------------------------------------------------------------------------

def _address(value: Any, version: int | None) -> IPv4Address | IPv6Address:
    if isinstance(value, (IPv4Address, IPv6Address)):
        address = value
    else:
        want = f"an IPv{version} address" if version else "an IP address"
        text = _require_str(value, want)
        if "%" in text:
            raise ValueError(f"{shown(value)} has a zone id (%...): write the plain address, without %")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            example = {4: "192.0.2.10", 6: "2001:db8::10", None: "192.0.2.10 or 2001:db8::10"}[version]
            raise ValueError(f"{shown(value)} is not {want} like {example}") from None
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        raise ValueError(f"{shown(str(value))} has a zone id (%...): write the plain address, without %")
    if version is not None and address.version != version:
        raise ValueError(f"{shown(str(value))} is an IPv{address.version} address; this field takes IPv{version}")
    return address


def ipv4_address(value: Any) -> IPv4Address:
    return _address(value, 4)  # type: ignore[return-value]


def ipv6_address(value: Any) -> IPv6Address:
    return _address(value, 6)  # type: ignore[return-value]


def any_network(value: Any) -> IPv4Network | IPv6Network:
    if isinstance(value, (IPv4Network, IPv6Network)):
        return value
    text = _require_str(value, "a network")
    if "%" in text:  # Python's ip_network keeps a zone id (fe80::%eth0/64); nftables and BIRD do not take one
        raise ValueError(f"{shown(value)} has a zone id (%...): write the plain network, without %")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(f"{shown(value)} has host bits set; did you mean "
                             f"{ipaddress.ip_network(text, strict=False)}?") from None
        raise ValueError(f"{shown(value)} is not an IPv4 or IPv6 network like 198.51.100.0/24") from None


def address_problem(address: IPv4Address | IPv6Address) -> str | None:
    """Why ``address`` cannot be a host on the Internet (unspecified, loopback, multicast...), or None."""
    kinds = (("is_unspecified", "the unspecified address"), ("is_loopback", "a loopback address"),
             ("is_multicast", "a multicast address"), ("is_link_local", "a link-local address"),
             ("is_reserved", "a reserved address"))
    if isinstance(address, IPv4Address) and address == IPv4Address("255.255.255.255"):
        return f"{address} is the broadcast address"
    for attribute, name in kinds:
        if getattr(address, attribute):
            return f"{address} is {name}"
    return None


# --- SSH keys ---------------------------------------------------------------------------------------------------

def ssh_public_key(value: Any) -> str:
    """One OpenSSH public key, ``TYPE BASE64 [COMMENT]``, parsed for real: the blob decodes and names the same type.

    No options (``command=...``), one line, a comment of printable ASCII: one entry of authorized_keys, never two.
    """
    text = _no_controls(_require_str(value, "an OpenSSH public key"), "an OpenSSH public key")
    parts = text.split(" ", 2)
    example = "(ssh-ed25519 AAAA...)"
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ValueError(f"{shown(value)} is not an OpenSSH public key {example}")
    kind, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        inner = raw[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise ValueError(f"{shown(value)}: the key data is not valid base64 of an SSH key {example}") from None
    if inner != kind or len(raw) <= 4 + length:
        raise ValueError(f"{shown(value)}: the key data is a {shown(inner)} key or truncated, not {kind}")
    if len(parts) == 3 and not all(0x20 <= ord(c) < 0x7F for c in parts[2]):
        raise ValueError(f"{shown(value)}: the comment must be printable ASCII")
    return text


# --- Vultr plans ------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def vultr_plans() -> tuple[str, ...]:
    """The plan ids in infra/data/plans.json (prices used by the cost output)."""
    data = json.loads(resources.files("infra").joinpath("data/plans.json").read_text(encoding="utf-8"))
    return tuple(data["vultr"])


def vultr_plan(value: Any) -> str:
    text = _require_str(value, "a Vultr plan id")
    if not _PLAN_RE.fullmatch(text) or text not in vultr_plans():
        plans = vultr_plans()
        raise ValueError(f"{shown(value)} is not a known Vultr plan ({', '.join(plans[:4])}, ... {len(plans)} in all, "
                         "see infra/data/plans.json; add a new plan there with its price)")
    return text


# --- S3 bucket names ---------------------------------------------------------------------------------------------

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (general purpose buckets).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_RESERVED = (("xn--", "sthree-", "amzn-s3-demo-"), ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))


def s3_bucket_name(value: Any) -> str:
    """An S3 general purpose bucket name: 3-63 of a-z 0-9 . -, letter or digit at both ends, no '..', not an IPv4
    address, none of the reserved prefixes and suffixes; and, for virtual-hosted-style HTTPS, no dot at all."""
    text = _require_str(value, "an S3 bucket name")
    if not _BUCKET_RE.fullmatch(text) or ".." in text:
        raise ValueError(f"{shown(value)} is not an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', "
                         "starting and ending with a letter or digit")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", text):
        raise ValueError(f"{shown(value)} looks like an IP address, which S3 refuses as a bucket name")
    if text.startswith(_BUCKET_RESERVED[0]) or text.endswith(_BUCKET_RESERVED[1]):
        raise ValueError(f"{shown(value)} uses a prefix or suffix S3 reserves (xn--, sthree-, -s3alias, --ol-s3, ...)")
    if "." in text:
        # The PoPs fetch https://<bucket>.s3.<region>.amazonaws.com/...: S3's wildcard certificate covers one label.
        raise ValueError(f"{shown(value)} has a dot, which breaks HTTPS to <bucket>.s3.<region>.amazonaws.com; use '-'")
    return text


DnsName = Annotated[str, BeforeValidator(dns_name)]
PopCode = Annotated[str, BeforeValidator(pop_code)]
Community = Annotated[str, BeforeValidator(community)]
Mntner = Annotated[str, BeforeValidator(mntner)]
BgpPasswordEnv = Annotated[str, BeforeValidator(bgp_password_env)]
FreeText = Annotated[str, BeforeValidator(free_text)]
RipeDescr = Annotated[str, BeforeValidator(ripe_descr)]
Country = Annotated[str, BeforeValidator(country)]
Ipv4Address = Annotated[IPv4Address, BeforeValidator(ipv4_address)]
Ipv6Address = Annotated[IPv6Address, BeforeValidator(ipv6_address)]
AnyNetwork = Annotated[IPv4Network | IPv6Network, BeforeValidator(any_network)]
SshKey = Annotated[str, BeforeValidator(ssh_public_key)]
VultrPlan = Annotated[str, BeforeValidator(vultr_plan)]
S3BucketName = Annotated[str, BeforeValidator(s3_bucket_name)]

"""Sign the NSD zone at render time (docs/dnssec.md): ECDSA P-256 (algorithm 13) combined signing keys, NSEC.

The private keys come from environment variables named in ``dns.dnssec.keys[].env`` (never from the stack file), and
only DNSKEY, DS and RRSIG records leave this module. Signatures are deterministic (RFC 6979, dnspython's default for
ECDSA) and their validity window is aligned to a fixed signing period, so the same zone rendered in the same period is
the same bytes on every PoP and every render: a ``pulumi up`` within a period replaces no instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.RRSIG
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from infra.model import ConfigError, Network

SIGNING_PERIOD = timedelta(days=7)  # a new period starts every Thursday 00:00 UTC (the Unix epoch was a Thursday)
CLOCK_SKEW = timedelta(hours=1)  # inception this far before the period starts: resolvers with a slow clock
VALIDITY = timedelta(days=30)  # expiration = inception + VALIDITY: 23+ days left on a PoP replaced on schedule
CSK_FLAGS = 257  # ZONE | SEP: one combined signing key signs the DNSKEY set and every other RRset


@dataclass(frozen=True)
class SigningKey:
    """One loaded key: the private key stays in memory, ``dnskey`` and ``ds`` are public."""

    field: str  # e.g. dns.dnssec.keys[0], for messages
    private: ec.EllipticCurvePrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY
    ds: str
    publish_ds: bool

    def __repr__(self) -> str:  # never the private key, even in a traceback
        return f"SigningKey({self.field}, DS {self.ds})"


def ds_text(zone: str, dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> str:
    """``<key tag> 13 2 <SHA-256 hex>``, in the form ``dns.dnssec.keys[].ds`` is written (upper-case digest)."""
    ds = dns.dnssec.make_ds(dns.name.from_text(zone), dnskey, "SHA256")
    return f"{ds.key_tag} {ds.algorithm} {ds.digest_type} {ds.digest.hex().upper()}"


def parse_private_key(pem: str, where: str) -> ec.EllipticCurvePrivateKey:
    """A PEM ECDSA P-256 private key, or ConfigError naming ``where`` (never quoting the material)."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        kind = "encrypted" if isinstance(exc, TypeError) else "not a PEM private key"  # TypeError: a password is needed
        raise ConfigError([f"{where}: the key is {kind}; give an unencrypted PEM ECDSA P-256 key "
                           "(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)"]) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__.removesuffix("PrivateKey")
        raise ConfigError([f"{where}: the key is {kind.lstrip('_')}, which is not supported; DNSSEC here uses ECDSA P-256 (algorithm 13): "
                           "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"])
    return key


def dnskey_of(private: ec.EllipticCurvePrivateKey) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
    return dns.dnssec.make_dnskey(private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=CSK_FLAGS)


def load_keys(network: Network, env: Mapping[str, str]) -> list[SigningKey]:
    """Every key of ``dns.dnssec``, checked against its ``ds``; ConfigError (one line) on the first problem."""
    if network.dns.dnssec is None:
        return []
    keys = []
    for i, entry in enumerate(network.dns.dnssec.keys):
        field = f"dns.dnssec.keys[{i}]"
        pem = env.get(entry.env, "")
        if not pem.strip():
            raise ConfigError([f"{field}.env: {entry.env} is not set; export it with the zone's PEM private key "
                               "(docs/dnssec.md)"])
        private = parse_private_key(pem, f"{field}.env ({entry.env})")
        dnskey = dnskey_of(private)
        ds = ds_text(network.dns.zone, dnskey)
        if ds != entry.ds:
            raise ConfigError([f"{field}.ds: '{entry.ds}' does not match the key in {entry.env} (its DS is '{ds}'): "
                               "a wrong or stale key, or a DS copied from another zone"])
        keys.append(SigningKey(field, private, dnskey, ds, entry.publish_ds))
    return keys


def signing_window(now: datetime) -> tuple[datetime, datetime]:
    """(inception, expiration) of the period holding ``now``: the same for every render in that period."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + ((now - epoch) // SIGNING_PERIOD) * SIGNING_PERIOD
    inception = start - CLOCK_SKEW
    return inception, inception + VALIDITY


def sign_zone_text(text: str, zone: str, keys: list[SigningKey], now: datetime) -> str:
    """The zone file ``text`` signed with ``keys`` (NSEC): its leading comments, then the signed zone, names sorted."""
    if not keys:
        raise ConfigError(["dns.dnssec: no signing key was loaded"])
    parsed = dns.zone.from_text(text, origin=zone, relativize=True, check_origin=True)
    inception, expiration = signing_window(now)
    dns.dnssec.sign_zone(parsed, keys=[(k.private, k.dnskey) for k in keys], inception=inception,
                         expiration=expiration, deterministic=True)
    header = _leading_comments(text)
    header.append(f"; Signed (NSEC) with {', '.join(f'key {dns.dnssec.key_id(k.dnskey)}' for k in keys)}, valid "
                  f"{inception:%Y-%m-%d %H:%M} to {expiration:%Y-%m-%d %H:%M} UTC (docs/dnssec.md).")
    body = parsed.to_text(sorted=True, relativize=True, want_origin=True)
    return "\n".join(header) + "\n" + body


def _leading_comments(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if not line.startswith(";"):
            break
        out.append(line)
    return out


def earliest_expiration(zone_text: str, zone: str) -> datetime:
    """The earliest RRSIG expiration in a signed zone file (the lab and tests read it back)."""
    parsed = dns.zone.from_text(zone_text, origin=zone, relativize=True)
    found = [rd.expiration for _, _, rd in parsed.iterate_rdatas() if isinstance(rd, dns.rdtypes.ANY.RRSIG.RRSIG)]
    if not found:
        raise ValueError(f"zone {zone} holds no RRSIG")
    return datetime.fromtimestamp(min(found), UTC)


@dataclass(frozen=True)
class ZoneSigning:
    """What signing a render needs: the loaded keys and the time that picks the signing period."""

    keys: list[SigningKey]
    now: datetime


def signing_from_env(network: Network, env: Mapping[str, str], now: datetime | None = None) -> ZoneSigning | None:
    """The keys of ``dns.dnssec`` from ``env`` (None for an unsigned zone); ConfigError before anything is rendered."""
    if network.dns.dnssec is None:
        return None
    return ZoneSigning(load_keys(network, env), now or datetime.now(UTC))

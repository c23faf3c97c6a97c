"""The zone's DS record in the parent Route53 zone: the chain of trust to the signed zone every PoP serves.

It depends on every PoP's readiness gate (and external PoP), so Pulumi creates or changes it only after the signed
zone is served, and, deleting in reverse dependency order, removes it before the PoPs that serve the signed zone: a DS
without signed answers behind it makes every validating resolver fail the whole zone (docs/dnssec.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra.model import Network
from userdata.dnssec import SigningKey

# Like the NS delegation next to it (infra/components/geodns.py DELEGATION_TTL): the rollover waits this long between
# steps (docs/dnssec.md), so an hour keeps a rollover within a day.
DS_TTL = 3600


def ds_records(keys: Sequence[SigningKey]) -> list[str]:
    """The DS values to publish: every key with ``publishDs``, in the order of ``dns.dnssec.keys``."""
    return [k.ds for k in keys if k.publish_ds]


def ds_record(name: str, network: Network, keys: Sequence[SigningKey], zone_id: pulumi.Input[str],
              served: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions | None = None) -> aws.route53.Record | None:
    """The DS record set of ``dns.zone`` in the parent zone, after ``served`` (gates, external PoPs); None if no key
    publishes its DS (the first step of turning DNSSEC off)."""
    values = ds_records(keys)
    if not values:
        return None
    base = opts or pulumi.ResourceOptions()
    return aws.route53.Record(
        name, zone_id=zone_id, name=network.dns.zone, type="DS", ttl=DS_TTL, records=values,
        opts=pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=list(served))))

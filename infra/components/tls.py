"""The HTTPS certificate's cloud side (docs/tls.md): the challenge zone, its CNAMEs, the S3 store, two IAM identities.

* ``acme.<parentZone>`` (``tls.challengeZone``): a Route53 zone of its own, delegated from the parent zone. Every
  ``_acme-challenge.<name>`` is a CNAME into it (names in the NSD zone: in the rendered zone file; names in the
  parent zone: Route53 records created here); lego follows the CNAME and writes the TXT there.
* One S3 object holds certificate and key; public access is blocked.
* The issuer identity may change only those TXT records (infra/derived/tls_iam.py) and read/write the object; the reader
  identity, whose access key every other PoP gets, may only read it. The access keys are secret outputs that reach
  the PoPs' user data; the certificate's private key never passes through Pulumi.
* Once the PoPs exist, a second object holds the reboot peer list (:meth:`TlsCertificate.add_reboot_peers`): their
  addresses, which every PoP's fetch installs (docs/security.md#security-updates-and-reboots). Both identities may
  only read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.contracts import REBOOT_PEERS_STORE_KEY
from infra.contracts import TLS_STORE_KEY as STORE_KEY
from infra.contracts import TLS_STORE_REGION as STORE_REGION
from infra.derived.tls_iam import issuer_policy, reader_policy
from infra.model import Network
from userdata.reboots import peer_document
from userdata.tls import TlsCredentials, challenge_cnames, challenge_target, store_bucket

DELEGATION_TTL = 3600
CNAME_TTL = 300


@dataclass
class TlsArgs:
    network: Network
    stack: str = "stack"


def _credentials(key: aws.iam.AccessKey) -> pulumi.Output[TlsCredentials]:
    return pulumi.Output.secret(pulumi.Output.all(key.id, key.secret).apply(lambda v: TlsCredentials(v[0], v[1])))


class TlsCertificate(pulumi.ComponentResource):
    """Everything in AWS that issuing and distributing the one certificate needs."""

    challenge_zone_id: pulumi.Output[str]
    issuer_credentials: pulumi.Output[TlsCredentials]
    reader_credentials: pulumi.Output[TlsCredentials]

    def __init__(self, name: str, args: TlsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        net = args.network
        zone_name = net.tls_challenge_zone
        super().__init__("anycast:index:TlsCertificate", name, {"names": net.tls_names, "challengeZone": zone_name,
                                                                "issuer": net.tls_issuer}, opts)
        child = pulumi.ResourceOptions(parent=self)
        # force_destroy: lego may leave a TXT record behind after a failed run; it must not block deleting the zone.
        zone = aws.route53.Zone(f"{name}-challenge-zone", name=zone_name, force_destroy=True,
                                comment=f"anycast {args.stack}: ACME DNS-01 challenges only (docs/tls.md)", opts=child)
        self.challenge_zone_id = zone.zone_id
        self._name, self._network, self._zone = name, net, zone
        peers_key = (REBOOT_PEERS_STORE_KEY,)

        bucket_name = store_bucket(net)
        bucket = aws.s3.Bucket(f"{name}-store", bucket=bucket_name, region=STORE_REGION,
                               tags={"anycast-stack": args.stack, "purpose": "tls-certificate"}, opts=child)
        self._bucket = bucket
        aws.s3.BucketPublicAccessBlock(f"{name}-store-private", bucket=bucket.id, region=STORE_REGION,
                                       block_public_acls=True, block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=pulumi.ResourceOptions(parent=bucket))

        txt_names = [challenge_target(net, n) for n in net.tls_names]
        issuer = aws.iam.User(f"{name}-issuer", name=f"anycast-{args.stack}-tls-issuer", path="/anycast/",
                              tags={"anycast-stack": args.stack}, opts=child)
        reader = aws.iam.User(f"{name}-reader", name=f"anycast-{args.stack}-tls-reader", path="/anycast/",
                              tags={"anycast-stack": args.stack}, opts=child)
        self.issuer_policy = aws.iam.UserPolicy(
            f"{name}-issuer-policy", user=issuer.name, name="acme-dns01-txt-and-certificate-store",
            policy=zone.zone_id.apply(lambda zid: issuer_policy(zid, txt_names, bucket_name, STORE_KEY, peers_key)),
            opts=pulumi.ResourceOptions(parent=issuer))
        self.reader_policy = aws.iam.UserPolicy(
            f"{name}-reader-policy", user=reader.name, name="certificate-store-read",
            policy=reader_policy(bucket_name, STORE_KEY, peers_key), opts=pulumi.ResourceOptions(parent=reader))
        # The SDK marks AccessKey's secret (and sesSmtpPasswordV4) as secret outputs itself; _credentials keeps it so.
        issuer_key = aws.iam.AccessKey(f"{name}-issuer-key", user=issuer.name, opts=child)
        reader_key = aws.iam.AccessKey(f"{name}-reader-key", user=reader.name, opts=child)
        self.issuer_credentials = _credentials(issuer_key)
        self.reader_credentials = _credentials(reader_key)
        self.register_outputs({"challengeZoneId": self.challenge_zone_id, "bucket": bucket_name,
                               "issuer": net.tls_issuer, "names": net.tls_names})

    def add_parent_records(self, parent_zone_id: pulumi.Input[str]) -> list[aws.route53.Record]:
        """The challenge zone's NS delegation and the parent-zone CNAMEs, in the parent zone (known once the GeoDNS
        component has looked it up or created it; that component needs the PoPs, which need this one's keys)."""
        child = pulumi.ResourceOptions(parent=self)
        name, net, zone = self._name, self._network, self._zone
        records = [aws.route53.Record(
            f"{name}-challenge-delegation", zone_id=parent_zone_id, name=net.tls_challenge_zone, type="NS",
            ttl=DELEGATION_TTL, records=zone.name_servers, opts=child)]
        _, parent_cnames = challenge_cnames(net)
        records += [aws.route53.Record(
            f"{name}-cname-{owner.replace('.', '-')}", zone_id=parent_zone_id, name=owner, type="CNAME",
            ttl=CNAME_TTL, records=[target], opts=child) for owner, target in sorted(parent_cnames.items())]
        return records

    def add_reboot_peers(self, addresses: dict[str, tuple[pulumi.Input[str] | None, pulumi.Input[str] | None]]
                         ) -> aws.s3.BucketObjectv2:
        """The reboot peer list (userdata/reboots.py peer_document) from every PoP's addresses: the instances'
        ``main_ip``/``v6_main_ip`` outputs (so created after them, and rewritten when one is replaced) and the
        external PoPs' configured ones. Addresses only: nothing secret."""
        codes = sorted(addresses)
        flat = [a for code in codes for a in addresses[code]]

        def document(v: list[str | None]) -> str:
            try:  # the Vultr API's answer is checked (IP literals only): a refusal is one line naming the PoP
                return peer_document(self._network, {code: (v[2 * i], v[2 * i + 1]) for i, code in enumerate(codes)})
            except ValueError as exc:
                raise pulumi.RunError(str(exc)) from None

        content = pulumi.Output.all(*flat).apply(document)
        return aws.s3.BucketObjectv2(
            f"{self._name}-reboot-peers", bucket=self._bucket.id, key=REBOOT_PEERS_STORE_KEY, region=STORE_REGION,
            content=content, content_type="application/json", opts=pulumi.ResourceOptions(parent=self._bucket))

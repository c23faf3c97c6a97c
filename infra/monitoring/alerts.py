"""Prometheus alerting rules for an anycast network, from its stack outputs: ``DIR/alerts.yml``.

Every alert names the PoP (label ``pop``, set by the scrape jobs of ``infra/monitoring/targets.py``) and carries a
``runbook`` annotation: what it means and what to do first. Metric names are those of the real exporters:

* bird_exporter 1.4 with ``-bird.v2 -format.new`` (https://github.com/czerwonk/bird_exporter): ``bird_protocol_up``
  (labels ``name``, ``proto``, ``ip_version``, ``import_filter``, ``export_filter`` and ``state``, the BGP state, so
  rules aggregate ``without (state)``), ``bird_protocol_uptime`` (seconds since the last state change; needs
  ``timeformat protocol iso long``), ``bird_protocol_prefix_export_count``;
* blackbox_exporter (https://github.com/prometheus/blackbox_exporter): ``probe_success``,
  ``probe_ssl_earliest_cert_expiry``;
* Prometheus itself: ``up`` per scraped target.

The BIRD protocol names are the rendered ones (userdata/templates/bird.conf.j2): ``anycast4``/``anycast6`` (the
static protocols the health agent enables and disables) and ``upstream4``/``upstream6`` (the BGP sessions).
``promtool test rules`` runs a firing and a quiet case of every alert (tests/unit/test_alerts.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from infra.model import ConfigError

BIRD_JOB = "anycast-bird"
HEALTH_JOB = "anycast-health"
BLACKBOX_JOB = "blackbox-exporter"
PROBE_JOBS = ("anycast-http", "anycast-https", "anycast-dns")
CERT_DAYS = 14
FLAP_RESETS = 4  # two down-and-up cycles: each changes the protocol state (and resets its uptime) twice
# Route53 marks a unicast PoP unhealthy after 3 failed checks 30 s apart (infra/components/geodns.py).
ROUTE53_WINDOW = "90s"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    runbook: str


def min_announcing_default(outputs: dict[str, Any]) -> int:
    """Half the anycast PoPs, rounded up (at least 1): fewer than that announcing is a fleet problem."""
    return max(1, math.ceil(len(outputs["network"]["anycastPops"]) / 2))


def alerts(outputs: dict[str, Any], min_announcing: int | None = None) -> list[Alert]:
    """The alerts, in the order an operator reads them (routing first, then service, then monitoring itself)."""
    n_anycast = len(outputs["network"]["anycastPops"])
    need = min_announcing_default(outputs) if min_announcing is None else min_announcing
    if need < 1 or need > max(1, n_anycast):
        raise ConfigError([f"--min-announcing: {need} is outside 1..{max(1, n_anycast)} (the stack has {n_anycast} "
                           "anycast PoPs)"])
    bird = f'job="{BIRD_JOB}"'
    static = f'{bird},mode="anycast",proto="Static",name=~"anycast[46]"'
    bgp = f'{bird},proto="BGP"'
    return [
        Alert("AnycastPopWithdrawn",
              f"max without (state) (bird_protocol_up{{{static}}}) == 0", "1m", "warning",
              "{{ $labels.pop }} is up but withdrawn: {{ $labels.name }} is disabled",
              "The health agent disabled the anycast routes because Caddy or NSD failed its checks (or the PoP is "
              "drained). Users already moved to the next PoP. On the PoP: `journalctl -u anycast-health`, "
              "`systemctl status caddy nsd`, `birdc show protocols`; fix the service, the agent re-announces after "
              "`rise` good checks."),
        Alert("AnycastBgpSessionDown",
              f"max without (state) (bird_protocol_up{{{bgp}}}) == 0", "2m", "critical",
              "{{ $labels.pop }}: BGP session {{ $labels.name }} (IPv{{ $labels.ip_version }}) is down",
              "The PoP announces nothing on this family. `birdc show protocols all {{ $labels.name }}` on the PoP "
              "(Last error); check that the TCP-MD5 key matches the Vultr panel's BGP tab, that BGP is enabled "
              "for the instance, and nftables (tcp/179 from the peer)."),
        # The health agent announced (static protocols up) and the session is Established, yet BIRD exports no route
        # over it: AnycastPopWithdrawn watches only the static protocols, so this failure would be silent.
        Alert("AnycastPopExportsNothing",
              f'max without (state) (bird_protocol_prefix_export_count{{{bgp},mode="anycast"}}) == 0'
              f' and on (pop, name) max without (state) (bird_protocol_up{{{bgp},mode="anycast"}}) == 1'
              f" and on (pop, ip_version) max without (state) (bird_protocol_up{{{static}}}) == 1", "2m", "critical",
              "{{ $labels.pop }}: BGP session {{ $labels.name }} is up but exports no route",
              "The PoP wants to announce (its anycast static protocol is up) and the session is Established, but "
              "BIRD's export filter passes nothing to the upstream: users of this PoP's catchment already use "
              "another PoP, and nothing else alerts. On the PoP: `birdc show route export {{ $labels.name }}` "
              "(empty), `birdc show route protocol anycast{{ $labels.ip_version }}` (the route exists?); compare "
              "the rendered bird.conf filter with the stack's prefixes and communities, and roll back the change "
              "that broke it."),
        Alert("AnycastBgpSessionFlapping",
              f"resets(bird_protocol_uptime{{{bgp}}}[30m]) >= {FLAP_RESETS}", "0s", "warning",
              "{{ $labels.pop }}: BGP session {{ $labels.name }} changed state {{ $value }} times in 30 minutes",
              "A flapping session makes upstreams damp the prefix. Look for hold-timer expiries in the PoP's BIRD "
              "log (CPU steal, packet loss to the neighbour); if it keeps flapping, drain the PoP "
              "(`anycast-health --drain`) until the provider fixes the path."),
        Alert("AnycastTooFewPopsAnnouncing",
              f'(count(max by (pop) (bird_protocol_prefix_export_count{{{bgp},mode="anycast"}}) > 0) or vector(0))'
              f" < {need}", "1m", "critical",
              f"Only {{{{ $value }}}} of {n_anycast} anycast PoPs announce the prefix (threshold {need})",
              "The remaining PoPs carry all traffic. Look at the AnycastPopWithdrawn and AnycastBgpSessionDown "
              "alerts for the missing PoPs; if many went at once, suspect a bad rollout (roll back the stack) or a "
              "provider-wide BGP incident."),
        Alert("AnycastUnicastPopUnhealthy",
              'probe_success{job="anycast-http",mode="unicast"} == 0', ROUTE53_WINDOW, "critical",
              "Unicast PoP {{ $labels.pop }} fails the HTTP check Route53 makes ({{ $labels.instance }})",
              "Route53 makes the same GET /healthz (3 failures, 30 s apart) and then answers the PoP's GeoDNS area "
              "with the default (anycast) record. Check Caddy and nftables on the PoP; the Route53 console shows "
              "the health check's own verdict."),
        Alert("AnycastProbeFailing",
              'probe_success{job=~"anycast-dns|anycast-https"} == 0 or probe_success{job="anycast-http",mode!="unicast"} == 0',
              "2m", "critical",
              "Probe {{ $labels.probe }} ({{ $labels.module }}) fails: {{ $labels.instance }}",
              "Users reaching this address get errors or the wrong PoP. `dig +nsid` / `curl -si` the target from "
              "the prober; a wrong X-PoP or NSID on the anycast address means a unicast PoP or a stale "
              "announcement answers."),
        Alert("AnycastCertificateExpiring",
              f"probe_ssl_earliest_cert_expiry - time() < {CERT_DAYS} * 86400", "1h", "warning",
              "Certificate on {{ $labels.instance }} expires in less than " + str(CERT_DAYS) + " days",
              "Renewal has failed for a week or more: check the ACME client's log and rate limits, and that every "
              "PoP serves the renewed certificate."),
        Alert("AnycastPopNoMetrics",
              f'up{{job=~"{BIRD_JOB}|{HEALTH_JOB}"}} == 0', "3m", "warning",
              "No metrics from {{ $labels.pop }} ({{ $labels.job }} at {{ $labels.instance }})",
              "The exporter, the PoP or the path to it is down: nothing about this PoP is known. Check the "
              "instance in the provider panel, `systemctl status prometheus-bird-exporter anycast-health`, and "
              "that the Prometheus server's address is in admin.monitoringCidrs (firewall group and nftables)."),
        Alert("AnycastBlackboxExporterDown",
              f'up{{job="{BLACKBOX_JOB}"}} == 0', "3m", "warning",
              "The blackbox exporter at {{ $labels.instance }} does not answer: no probes run",
              "Every probe alert is blind while this fires. `systemctl status prometheus-blackbox-exporter` on the "
              "monitoring host; its config is DIR/blackbox.yml."),
    ]


def rules_document(outputs: dict[str, Any], min_announcing: int | None = None,
                   hold: str | None = None) -> dict[str, Any]:
    """The ``alerts.yml`` document; ``hold`` replaces every ``for`` (the lab uses a short one to watch alerts fire)."""
    rules = []
    for a in alerts(outputs, min_announcing):
        rules.append({"alert": a.name, "expr": a.expr, "for": hold if hold is not None else a.for_,
                      "labels": {"severity": a.severity},
                      "annotations": {"summary": a.summary, "runbook": a.runbook}})
    return {"groups": [{"name": "anycast", "rules": rules}]}

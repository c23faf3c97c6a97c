"""HTTPS (docs/tls.md): model refusals, rendered files, the IAM policies' least privilege, the policy-pack rule, and the
TLS resources of the program under mocks (schema conformance, secrets)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.derived.tls_iam import ACTIONS_KEY, NAMES_KEY, TYPES_KEY, issuer_policy, policy_problems, reader_policy
from infra.model import ConfigError, Network, parse_network
from infra.model.stack import read_stack_config
from policies import rules
from tests.conftest import TEST_PASSWORD
from tests.helpers.policy_args import resource_args, violations
from tests.helpers.program import schema_problems
from tests.pulumi_mocks import TEST_TLS_SECRET, run_in_subprocess
from userdata import tls as tls_files
from userdata.render import render_pop

TLS = {"enabled": True, "email": "hostmaster@example.com"}
CREDS = tls_files.TlsCredentials("AKIAEXAMPLEREADER", "secret/Example+Key")


def dev_doc(**tls: Any) -> dict[str, Any]:
    doc = copy.deepcopy(read_stack_config("dev")["anycast:network"])
    doc["tls"] = {**TLS, **tls}
    return dict(doc)


@cache
def tls_network() -> Network:
    return parse_network(dev_doc())


# --- model -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tls", "message"), [
    ({"names": ["cdn.example.org"]},
     "tls.names[0]: 'cdn.example.org' is neither in zone 'cdn.example.com' nor in parentZone 'example.com'; "
     "no challenge record can be placed for it"),
    ({"directory": "http://acme.example.com/dir"},
     "tls.directory: 'http://acme.example.com/dir' is not an https:// URL; ACME directories are served over HTTPS only "
     "(RFC 8555)"),
    ({"email": "hostmaster"}, "tls.email: 'hostmaster' is not an email address like hostmaster@example.com"),
    ({"email": None}, "tls.email: is required with tls.enabled: the ACME account's contact address"),
    ({"issuer": "fra"}, "tls.issuer: 'fra' is not a PoP code (ams, ewr, sao)"),
    ({"challengeZone": "acme.cdn.example.com"},
     "tls.challengeZone: 'acme.cdn.example.com' must be a subdomain of parentZone 'example.com' outside zone "
     "'cdn.example.com'"),
    ({"names": ["*.example.com"]}, "tls.names[0]: '*.example.com' is not a DNS name like cdn.example.com (letters, digits, hyphens, dots)"),
    ({"renewDays": 90}, "tls.renewDays: 90 is out of range: must be at most 60"),
])
def test_bad_tls_input_is_refused_with_one_line(tls: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_network(dev_doc(**tls))
    assert err.value.errors == [message]


def test_defaults() -> None:
    net = tls_network()
    assert net.tls_names == ["cdn.example.com", "www.cdn.example.com", "www.example.com"]
    assert net.tls_challenge_zone == "acme.example.com"
    assert net.tls_issuer == "ams"  # the first anycast PoP
    assert tls_files.challenge_cnames(net) == (
        {"_acme-challenge": "cdn.example.com.acme.example.com",
         "_acme-challenge.www": "www.cdn.example.com.acme.example.com"},
        {"_acme-challenge.www.example.com": "www.example.com.acme.example.com"})


# --- rendered files --------------------------------------------------------------------------------------------------

def test_caddyfile_redirects_except_healthz_and_serves_the_stored_certificate() -> None:
    net = tls_network()
    caddy = render_pop(net, net.pop("ewr"), TEST_PASSWORD).files["Caddyfile"]
    http, https = caddy.split("https://:443 {")
    assert "redir https://{host}{uri} 308" in http and "handle /healthz {" in http
    assert http.index("handle /healthz") < http.index("redir")
    assert f"tls {tls_files.CERT_FILE} {tls_files.KEY_FILE} {{" in https and "protocols tls1.2 tls1.3" in https
    assert http.count('header X-PoP "ewr"') == 1 and https.count('header X-PoP "ewr"') == 1
    assert "default_sni cdn.example.com" in caddy and "protocols h1 h2" in caddy
    plain = render_pop(parse_network(dev_doc(enabled=False)), net.pop("ewr"), TEST_PASSWORD)
    assert "443" not in plain.files["Caddyfile"] and "tls.json" not in plain.files


def test_zone_carries_the_challenge_cnames() -> None:
    net = tls_network()
    zone = render_pop(net, net.pop("sao"), TEST_PASSWORD).files["cdn.example.com.zone"]
    assert "_acme-challenge IN CNAME cdn.example.com.acme.example.com.\n" in zone
    assert "_acme-challenge.www IN CNAME www.cdn.example.com.acme.example.com.\n" in zone


def test_issuer_and_readers_get_their_roles_and_only_their_key() -> None:
    net = tls_network()
    issuer = render_pop(net, net.pop("ams"), TEST_PASSWORD, CREDS)
    reader = render_pop(net, net.pop("ewr"), TEST_PASSWORD, CREDS)
    issuer_cfg, reader_cfg = json.loads(issuer.files["tls.json"]), json.loads(reader.files["tls.json"])
    assert issuer_cfg["acme"]["directory"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert issuer_cfg["acme"]["renew_days"] == 30 and "acme" not in reader_cfg
    assert reader_cfg["store"]["url"] == "https://anycast-tls-cdn-example-com.s3.us-east-1.amazonaws.com/tls/bundle.json"
    for rendered, timers, packages in ((issuer, {"anycast-tls-fetch.timer", "anycast-tls-issue.timer"}, {"lego", "openssl"}),
                                       (reader, {"anycast-tls-fetch.timer"}, {"openssl"})):
        doc = yaml.safe_load(rendered.user_data)
        files = {f["path"]: f for f in doc["write_files"]}
        assert files[tls_files.CREDENTIALS_FILE]["permissions"] == "0600"
        assert json.loads(files[tls_files.CREDENTIALS_FILE]["content"])["secret_access_key"] == CREDS.secret_access_key
        assert {p.rsplit("/", 1)[1] for p in files if p.endswith(".timer") and "-tls-" in p} == timers
        assert packages <= set(doc["packages"]) and ("lego" in doc["packages"]) == ("lego" in packages)
        bootstrap = doc["runcmd"].index(["/usr/bin/python3", tls_files.SCRIPT, "bootstrap", "--config", tls_files.CONFIG_FILE])
        assert bootstrap < doc["runcmd"].index(["systemctl", "restart", "nsd.service", "caddy.service", "bird.service"])
        assert "PRIVATE KEY" not in rendered.user_data  # the certificate's key is fetched, never in user data
    without = yaml.safe_load(render_pop(net, net.pop("ewr"), TEST_PASSWORD).user_data)
    assert tls_files.CREDENTIALS_FILE not in {f["path"] for f in without["write_files"]}
    assert "secret/Example" not in repr(CREDS)


# --- IAM policies and the policy pack ------------------------------------------------------------------------------

NAMES = ["cdn.example.com.acme.example.com", "www.example.com.acme.example.com"]


def _issuer() -> dict[str, Any]:
    return dict(json.loads(issuer_policy("Z0CHALLENGE", NAMES, "bucket", "tls/bundle.json")))


def test_units_pass_systemd_analyze_and_a_failed_order_is_retried(tmp_path: Path) -> None:
    """The issuer's units with the real ``systemd-analyze verify``; a failed order runs again after ISSUE_RETRY (not
    12 h later), and an empty store (exit 75) does not fail the fetch unit."""
    import shutil
    import subprocess

    net = parse_network(dev_doc())
    units = tls_files.units(net, net.pop(net.tls_issuer))
    issue = units["anycast-tls-issue.service"].splitlines()
    assert "Restart=on-failure" in issue and f"RestartSec={tls_files.ISSUE_RETRY}" in issue
    assert tls_files.ISSUE_RETRY == "30min"  # 2 failed validations per name an hour, Let's Encrypt allows 5
    assert "SuccessExitStatus=75" in units["anycast-tls-fetch.service"].splitlines()
    assert shutil.which("systemd-analyze"), "make deps installs systemd"
    for name, text in units.items():
        (tmp_path / name).write_text(text.replace(tls_files.SCRIPT, "/bin/true"), encoding="utf-8")
    res = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)], capture_output=True,
                         text=True, timeout=60, env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"},
                         check=False)
    assert res.returncode == 0 and "anycast-tls" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_the_policies_are_least_privilege() -> None:
    assert policy_problems(issuer_policy("Z0CHALLENGE", NAMES, "bucket", "tls/bundle.json")) == []
    assert policy_problems(reader_policy("bucket", "tls/bundle.json")) == []
    change = _issuer()["Statement"][0]
    assert change["Resource"] == "arn:aws:route53:::hostedzone/Z0CHALLENGE"
    assert change["Condition"]["ForAllValues:StringEquals"] == {
        NAMES_KEY: NAMES, TYPES_KEY: ["TXT"], ACTIONS_KEY: ["DELETE", "UPSERT"]}
    assert json.loads(reader_policy("b", "k"))["Statement"][0]["Action"] == ["s3:GetObject"]


def _mutate(fn: Any) -> list[str]:
    doc = _issuer()
    fn(doc["Statement"])
    return policy_problems(doc)


@pytest.mark.parametrize(("mutation", "expected"), [
    (lambda s: s[0].update(Action="route53:*"), "action route53:* is not needed"),
    (lambda s: s[0].update(Resource="arn:aws:route53:::hostedzone/*"), "only on the challenge zone's own ARN"),
    (lambda s: s[0].pop("Condition"), "without a ForAllValues:StringEquals condition"),
    (lambda s: s[0]["Condition"]["ForAllValues:StringEquals"].update({TYPES_KEY: ["TXT", "A"]}), "must be exactly [TXT]"),
    (lambda s: s[0]["Condition"]["ForAllValues:StringEquals"].pop(NAMES_KEY), "is missing: every name"),
    (lambda s: s[0]["Condition"]["ForAllValues:StringEquals"].update({NAMES_KEY: ["*.acme.example.com"]}), "is a pattern"),
    (lambda s: s[0]["Condition"]["ForAllValues:StringEquals"].update({NAMES_KEY: ["WWW.example.com."]}), "not normalised"),
    (lambda s: s.append({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), "NotAction grants everything else"),
    (lambda s: s[4].update(Resource="arn:aws:s3:::bucket/*"), "only on the certificate object"),
    (lambda s: s.append({"Effect": "Allow", "Action": "*", "Resource": "*"}), "action * is not needed"),
])
def test_every_widening_is_caught(mutation: Any, expected: str) -> None:
    problems = _mutate(mutation)
    assert any(expected in p for p in problems), problems


def test_policy_pack_rule() -> None:
    ok = resource_args("aws:iam/userPolicy:UserPolicy", {"policy": issuer_policy("Z1", NAMES, "b", "k"), "user": "u"})
    assert violations(rules.acme_identity_least_privilege, ok) == []
    wide = copy.deepcopy(_issuer())
    wide["Statement"][0]["Condition"]["ForAllValues:StringEquals"][TYPES_KEY] = ["TXT", "CNAME"]
    bad = resource_args("aws:iam/userPolicy:UserPolicy", {"policy": json.dumps(wide), "user": "u"}, name="issuer")
    found = violations(rules.acme_identity_least_privilege, bad)
    assert len(found) == 1 and found[0].startswith("issuer: ") and "exactly [TXT]" in found[0]
    unknown = resource_args("aws:iam/userPolicy:UserPolicy", {"user": "u"})  # preview: the zone id is not known yet
    assert violations(rules.acme_identity_least_privilege, unknown) == []
    assert "acme-identity-txt-only" in {p.name for p in rules.policies()}


# --- the program under mocks ---------------------------------------------------------------------------------------

@cache
def mock_run() -> dict[str, Any]:
    return run_in_subprocess("dev", network=dev_doc())


def test_program_creates_the_cloud_side_conforming_to_the_schemas() -> None:
    run = mock_run()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in run["resources"]:
        by_type.setdefault(r["type"], []).append(r)
    assert len(by_type["aws:iam/user:User"]) == len(by_type["aws:iam/accessKey:AccessKey"]) == 2
    assert [z["inputs"]["name"] for z in by_type["aws:route53/zone:Zone"]] == ["acme.example.com"]
    records = {(r["inputs"]["name"], r["inputs"]["type"]): r["inputs"] for r in by_type["aws:route53/record:Record"]}
    assert records[("acme.example.com", "NS")]["records"] == ["ns-1.awsdns-00.com", "ns-2.awsdns-00.net"]
    assert records[("_acme-challenge.www.example.com", "CNAME")]["records"] == ["www.example.com.acme.example.com"]
    for r in run["resources"]:
        if r["custom"] and ("iam" in r["type"] or "s3" in r["type"] or r["type"].startswith("aws:route53")):
            assert schema_problems(r["type"], r["inputs"]) == [], r["name"]
    for policy in by_type["aws:iam/userPolicy:UserPolicy"]:
        assert policy_problems(policy["inputs"]["policy"]) == [], policy["name"]
        assert violations(rules.acme_identity_least_privilege,
                          resource_args(policy["type"], policy["inputs"], policy["name"])) == []
    (issuer,) = [p for p in by_type["aws:iam/userPolicy:UserPolicy"] if "issuer" in p["name"]]
    assert "arn:aws:route53:::hostedzone/Z0CREATED0000" in issuer["inputs"]["policy"]


def test_access_keys_reach_only_the_secret_user_data() -> None:
    run = mock_run()
    instances = {r["name"]: r for r in run["resources"] if r["type"] == "vultr:index/instance:Instance"}
    for name, inst in instances.items():
        assert "userData" in inst["secretInputs"], name
        doc = yaml.safe_load(inst["inputs"]["userData"])
        creds = {f["path"]: f for f in doc["write_files"]}[tls_files.CREDENTIALS_FILE]
        assert json.loads(creds["content"])["secret_access_key"] == TEST_TLS_SECRET
        assert ("anycast-tls-issue.timer" in inst["inputs"]["userData"]) == (name == "ams-instance")
    assert TEST_TLS_SECRET not in json.dumps(run["outputs"])
    assert TEST_TLS_SECRET not in json.dumps([r for r in run["resources"] if r["type"] != "vultr:index/instance:Instance"])


# --- monitoring: HTTPS probes see the certificate -------------------------------------------------------------------

def test_https_probes_and_blackbox_modules(tmp_path: Path) -> None:
    from infra.monitoring.targets import blackbox_modules, file_sd, load_outputs

    outputs = load_outputs(Path(__file__).resolve().parent.parent / "fixtures" / "stack-outputs-prod.json")
    https = {g["labels"]["probe"]: g for g in file_sd(outputs)["https.json"]}
    assert len(https) == len(outputs["probes"]["http"]) == len(outputs["probes"]["https"])
    assert https["anycast-ipv4"]["targets"] == ["https://192.0.2.1:443/healthz"]
    assert https["sao-ipv6"]["targets"] == [f"https://[{outputs['pops']['sao']['ipv6']}]:443/healthz"]
    modules = blackbox_modules(outputs, ca_file="/etc/ssl/lab-root.pem")["modules"]
    sao = modules["https_xpop_sao"]["http"]
    assert sao["fail_if_not_ssl"] is True and sao["follow_redirects"] is False
    assert sao["tls_config"] == {"server_name": "www.example.com", "min_version": "TLS12", "ca_file": "/etc/ssl/lab-root.pem"}
    assert "ca_file" not in blackbox_modules(outputs)["modules"]["https_xpop_sao"]["http"]["tls_config"]
    if shutil.which("prometheus-blackbox-exporter"):  # the exporter's own parser accepts the modules
        config = tmp_path / "blackbox.yml"
        config.write_text(yaml.safe_dump(blackbox_modules(outputs)))
        res = subprocess.run(["prometheus-blackbox-exporter", f"--config.file={config}", "--config.check"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert res.returncode == 0, res.stderr
    plain = parse_network(dev_doc(enabled=False))
    from infra.derived.outputs import probes_output

    assert probes_output(plain, {p.code: (None, None) for p in plain.pops})["https"] == []

"""The auditors' rows (lab/checks/audit.py) on fabricated tool output: nmap's XML, Lynis' report, the rendered
sysctl file; every finding Lynis may leave is explained in docs/security.md."""

from __future__ import annotations

from pathlib import Path

from bench.hardening import issuer_user_data
from lab.checks.audit import LYNIS_EXPLAINED, Scan, explained, parse_lynis_report, parse_nmap_xml, rendered_sysctls
from userdata import hardening

NMAP = """<?xml version="1.0"?><nmaprun><host><address addr="192.0.2.1" addrtype="ipv4"/><ports>
<port protocol="tcp" portid="53"><state state="open"/></port>
<port protocol="tcp" portid="22"><state state="filtered"/></port>
<port protocol="tcp" portid="9324"><state state="closed"/></port>
<port protocol="udp" portid="123"><state state="open|filtered"/></port>
</ports></host></nmaprun>"""


def test_nmap_states_and_what_answered() -> None:
    states = parse_nmap_xml(NMAP)
    assert states[("192.0.2.1", "tcp", 22)] == "filtered" and len(states) == 4
    scan = Scan(states)
    assert scan.open("192.0.2.1") == {("tcp", 53)}
    # a reset (closed) passed the firewall: it answered; filtered and open|filtered did not
    assert scan.answered("192.0.2.1") == {("tcp", 53), ("tcp", 9324)}


def test_lynis_report_and_explained_findings() -> None:
    report = "\n".join(["hardening_index=71", "lynis_tests_done=240",
                        "suggestion[]=SSH-7408|Consider hardening SSH configuration|Port (set 22 to )|-|",
                        "suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions (set 10 to 2)|-|",
                        "warning[]=PKGS-7388|Can't find any security repository|-|-|"])
    index, tests, findings = parse_lynis_report(report)
    assert (index, tests, len(findings)) == (71, 240, 3)
    assert findings[2] == ("PKGS-7388", "Can't find any security repository", "")
    assert explained("SSH-7408", "Port (set 22 to )") and explained("PKGS-7388", "")
    assert not explained("SSH-7408", "MaxSessions (set 10 to 2)") and not explained("AUTH-9999", "")
    assert parse_lynis_report("nothing")[0] is None


def test_every_explained_finding_is_in_the_docs() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    missing = [k for k in LYNIS_EXPLAINED if f"`{k}`" not in text]
    assert not missing, f"docs/security.md lacks: {missing}"


def test_rendered_sysctls_are_the_hardening_file() -> None:
    values = rendered_sysctls(issuer_user_data())
    assert values["net.ipv4.conf.all.rp_filter"] == "2" and values["net.ipv4.tcp_syncookies"] == "1"
    assert len(values) == sum(1 for line in hardening.SYSCTL_TEXT.splitlines() if " = " in line)
    assert rendered_sysctls("write_files: []") == {}

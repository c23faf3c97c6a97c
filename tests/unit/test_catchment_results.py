"""Atlas DNS results -> observations: the real recorded results (sagan's own expectations) and our PoPs' answers."""

from __future__ import annotations

import base64

import pytest

from infra.catchment.results import ResultsError, decode_abuf, parse_results
from tests.atlas_data import answer_abuf, dns_result, fixture


def test_nsid_is_read_from_the_abuf_of_a_real_result() -> None:
    (ob,) = parse_results(fixture("dns_nsid_kroot_msm1004048_fw4610.json"))
    # sagan asserts this NSID for this result (test_edns0): it exists only inside abuf.
    assert (ob.probe_id, ob.af, ob.target, ob.identity, ob.source) == ("14184", 6, "2001:7fd::1", "k3.ams-ix.k.ripe.net", "nsid")
    assert ob.rtt_ms == 219.205 and ob.error is None


def test_chaos_txt_identity_when_there_is_no_nsid() -> None:
    (ob,) = parse_results(fixture("dns_chaos_hostname_bind_kroot_msm1423386_fw4700.json"))
    assert (ob.identity, ob.source, ob.rtt_ms) == ("ns1.fi-hel.k.ripe.net", "chaos-txt", 1.347)


def test_timeouts_missing_abuf_and_resultsets_become_reasons() -> None:
    (ob,) = parse_results(fixture("dns_error_timeout_msm1666006_fw4610.json"))
    assert ob.error == "timeout after 5000 ms" and ob.identity is None
    obs = parse_results(fixture("dns_qbuf_nsid_request_resultset_msm1666151_fw4610.json"))
    assert [o.error for o in obs] == ["no abuf in the answer (NSID cannot be read)"] * 2
    assert [o.target for o in obs] == ["8.8.8.8", "8.8.4.4"]
    obs = parse_results(fixture("dns_tcp_resultset_with_timeout_msm2439409_fw4700.json"))
    assert [(o.af, o.error) for o in obs] == [
        (4, "answer carries neither an NSID nor a CHAOS TXT record"),
        (4, "answer carries neither an NSID nor a CHAOS TXT record"),
        (6, "timeout after 5000 ms")]


def test_an_in_class_txt_record_is_not_an_identity() -> None:
    (ob,) = parse_results(fixture("dns_soa_dnssec_msm2816176_fw4720.json"))
    assert ob.identity is None and "CHAOS TXT" in (ob.error or "")


def test_truncated_and_garbage_abuf() -> None:
    full = fixture("dns_nsid_kroot_msm1004048_fw4610.json")
    wire = base64.b64decode(full["result"]["abuf"])
    full["result"]["abuf"] = base64.b64encode(wire[: len(wire) // 2]).decode()
    (ob,) = parse_results(full)
    assert ob.error is not None and ob.error.startswith("abuf truncated or malformed (404 bytes)")
    full["result"]["abuf"] = base64.b64encode(wire[:7]).decode()
    assert parse_results(full)[0].error == "abuf truncated: 7 bytes, shorter than a DNS header"
    full["result"]["abuf"] = "not base64!"
    assert (parse_results(full)[0].error or "").startswith("abuf is not base64")


def test_our_pops_answers_round_trip() -> None:
    assert decode_abuf(answer_abuf("fra")) == ("fra", None)
    assert decode_abuf(answer_abuf(None, txt="ams")) == (None, "ams")
    (ob,) = parse_results([dns_result(7, "fra", rt=3.25)])
    assert (ob.probe_id, ob.identity, ob.source, ob.rtt_ms) == ("7", "fra", "nsid", 3.25)


@pytest.mark.parametrize(("doc", "message"), [
    ({"error": {"status": 404, "detail": "Not found"}}, "error document"),
    ("text", "expected a JSON list"),
    ([{"x": 1}], r"results\[0\]: not a RIPE Atlas result"),
    ([{"prb_id": 1, "type": "ping"}], "catchment needs a DNS measurement"),
])
def test_documents_that_are_not_dns_results(doc: object, message: str) -> None:
    with pytest.raises(ResultsError, match=message):
        parse_results(doc)

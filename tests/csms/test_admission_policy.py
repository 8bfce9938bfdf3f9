"""Connection admission: address lists, trusted proxies, schemes, origins, upgrade rate."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocpprpc._csms.admission import (
    AdmissionPolicy,
    Admit,
    RefusalKind,
    Refuse,
    parse_ip,
    parse_network,
    parse_origin,
)
from ocpprpc._csms.ratelimit import RateLimit

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def admitted(decision: Admit | Refuse) -> Admit:
    assert isinstance(decision, Admit), decision
    return decision


def refused(decision: Admit | Refuse, kind: RefusalKind, status: int = 403) -> Refuse:
    assert isinstance(decision, Refuse), decision
    assert (decision.kind, decision.status) == (kind, status)
    return decision


# -- parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.0.0.5", "10.0.0.5/32"),
        (" 192.168.1.0/24 ", "192.168.1.0/24"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:192.0.2.1", "192.0.2.1/32"),
        ("::/0", "::/0"),
    ],
)
def test_parse_network(text: str, expected: str) -> None:
    assert str(parse_network(text)) == expected


def test_parse_network_passes_network_objects() -> None:
    network = ipaddress.ip_network("10.0.0.0/8")
    assert parse_network(network) is network


@pytest.mark.parametrize(
    "text",
    ["", "10.0.0.5/24", "10.0.0.0/33", "300.0.0.0/8", "10.0.0.0/-1", "10.0.0.0/8/8", "host.example",
     "10.0.0.0/ 8", "\u0661\u0660.0.0.0/8", "fe80::1%eth0/64", "::1/129", None, 10],
)  # fmt: skip
def test_parse_network_rejects_junk_naming_it(text: object) -> None:
    with pytest.raises(ValueError, match="invalid IP network") as info:
        parse_network(text)  # type: ignore[arg-type]
    assert repr(text) in str(info.value)


@given(st.ip_addresses().flatmap(lambda a: st.tuples(st.just(a), st.integers(0, a.max_prefixlen))))
def test_parse_network_round_trips(address_and_prefix: tuple[V4 | V6, int]) -> None:
    address, prefix = address_and_prefix
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    parsed = parse_network(str(network))
    assert parse_network(str(parsed)) == parsed
    if not (isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96
            and network.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96"))):  # fmt: skip
        assert parsed == network


@given(st.text(max_size=40))
def test_parse_network_never_raises_anything_but_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_network(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", V4("192.0.2.1")),
        ("::ffff:192.0.2.1", V4("192.0.2.1")),
        (V6("::ffff:192.0.2.1"), V4("192.0.2.1")),
        ("2001:db8::1", V6("2001:db8::1")),
        ("not an ip", None),
        ("\u0661.1.1.1", None),
        (None, None),
    ],
)
def test_parse_ip(text: object, expected: object) -> None:
    assert parse_ip(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://ops.example.com", ("https", "ops.example.com", 443)),
        ("HTTPS://Ops.Example.COM:443", ("https", "ops.example.com", 443)),
        ("http://localhost:8080", ("http", "localhost", 8080)),
        ("http://[::1]:3000", ("http", "[::1]", 3000)),
        ("wss://10.0.0.1", ("wss", "10.0.0.1", 443)),
        ("ws://a", ("ws", "a", 80)),
    ],
)
def test_parse_origin(text: str, expected: tuple[str, str, int]) -> None:
    assert parse_origin(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "null", "ops.example.com", "https://", "https://ops.example.com/", "https://ops.example.com/path",
     "https://user@ops.example.com", "https://ops.example.com:0", "https://ops.example.com:99999",
     "https://ops.example.com:", "https://-bad.example", "https://bad-.example", "https://[nothex]", "https://[1:2:3:4:5:6:7:8:9]",
     "https://[::1", "ftp://files.example", "https://ops.example.com?x", "https://op s.example",
     "https://b\u00fccher.example", "https://ops.example.com:80:80", None],
)  # fmt: skip
def test_parse_origin_rejects_junk_naming_it(text: object) -> None:
    with pytest.raises(ValueError, match="invalid origin") as info:
        parse_origin(text)  # type: ignore[arg-type]
    assert repr(text) in str(info.value)


@given(st.text(max_size=60))
def test_parse_origin_never_raises_anything_but_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_origin(text)


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allow_ips": "10.0.0.0/8"}, "allow_ips is a list"),
        ({"deny_ips": ["10.0.0.5/8"]}, "invalid IP network '10.0.0.5/8'"),
        ({"trusted_proxies": ["proxy"]}, "invalid IP network 'proxy'"),
        ({"allow_origins": ["https://ops.example.com/"]}, "invalid origin"),
        ({"allowed_schemes": ["http"]}, "allowed_schemes"),
        ({"proxy_header": "x-real-ip"}, "proxy_header"),
        ({"upgrade_rate": "often"}, "invalid rate limit 'often'"),
        ({"max_tracked_ips": 0}, "max_tracked_ips must be at least 1, got 0"),
        ({"max_tracked_ips": True}, "max_tracked_ips must be at least 1, got True"),
    ],
)
def test_policy_rejects_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdmissionPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_reads_strings() -> None:
    policy = AdmissionPolicy(upgrade_rate="20/10s", allowed_schemes=("WSS",))
    assert policy.upgrade_rate == RateLimit(20, 10.0)
    assert policy.allowed_schemes == ("wss",)


# -- address lists ----------------------------------------------------------------------------


def test_an_open_policy_admits_everyone() -> None:
    decision = admitted(AdmissionPolicy().decide("192.0.2.1", [], "ws", 0.0))
    assert decision == Admit(V4("192.0.2.1"), "ws", ())


def test_deny_wins_over_allow() -> None:
    policy = AdmissionPolicy(allow_ips=["10.0.0.0/8"], deny_ips=["10.6.6.0/24"])
    admitted(policy.decide("10.1.2.3", [], "ws", 0.0))
    denied = refused(policy.decide("10.6.6.6", [], "ws", 0.0), RefusalKind.IP_DENIED)
    assert denied.reason == "address 10.6.6.6 is denied" and denied.client_ip == V4("10.6.6.6")
    outside = refused(policy.decide("192.0.2.1", [], "ws", 0.0), RefusalKind.IP_NOT_ALLOWED)
    assert outside.reason == "address 192.0.2.1 is not allowed"
    assert outside.headers() == []


def test_ipv6_and_ipv4_mapped_addresses() -> None:
    policy = AdmissionPolicy(allow_ips=["10.0.0.0/8", "2001:db8::/32"], deny_ips=["::ffff:10.6.6.6"])
    admitted(policy.decide("2001:db8::7", [], "ws", 0.0))
    assert admitted(policy.decide("::ffff:10.1.1.1", [], "ws", 0.0)).client_ip == V4("10.1.1.1")
    refused(policy.decide("10.6.6.6", [], "ws", 0.0), RefusalKind.IP_DENIED)
    refused(policy.decide("::ffff:10.6.6.6", [], "ws", 0.0), RefusalKind.IP_DENIED)
    refused(policy.decide("2001:db9::1", [], "ws", 0.0), RefusalKind.IP_NOT_ALLOWED)
    admitted(policy.decide(V6("2001:db8::8"), [], "ws", 0.0))


@pytest.mark.parametrize("peer", [None, "", "garbage", "fe80::1%"])
def test_an_unknown_peer_matches_no_deny_and_no_allow_entry(peer: str | None) -> None:
    decision = admitted(AdmissionPolicy(deny_ips=["0.0.0.0/0"]).decide(peer, [], "ws", 0.0))
    assert decision.client_ip is None and decision.notes == ("peer address unknown",)
    nope = refused(
        AdmissionPolicy(allow_ips=["0.0.0.0/0"]).decide(peer, [], "ws", 0.0), RefusalKind.IP_NOT_ALLOWED
    )
    assert nope.reason == "address unknown is not allowed"


# -- trusted proxies ------------------------------------------------------------------------------

PROXY = "10.0.0.2"
EDGE = "10.0.0.1"


def behind_proxy(**kwargs: object) -> AdmissionPolicy:
    return AdmissionPolicy(trusted_proxies=["10.0.0.0/24"], **kwargs)  # type: ignore[arg-type]


def test_x_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    decision = admitted(behind_proxy().decide("192.0.2.9", [(b"x-forwarded-for", b"198.51.100.1")], "ws", 0))
    assert decision.client_ip == V4("192.0.2.9")


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        ("198.51.100.1", "198.51.100.1"),
        ("203.0.113.66, 198.51.100.1", "198.51.100.1"),  # left of the client: forged, unread
        (f"198.51.100.1, {EDGE}", "198.51.100.1"),  # two proxies
        (f"{EDGE}", EDGE),  # every hop trusted: the left-most
        ("garbage, 198.51.100.1", "198.51.100.1"),  # forged junk left of the client
        ("198.51.100.1:4711", "198.51.100.1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
    ],
)
def test_x_forwarded_for_takes_the_right_most_untrusted_address(chain: str, client: str) -> None:
    decision = admitted(behind_proxy().decide(PROXY, [(b"X-Forwarded-For", chain.encode())], "ws", 0))
    assert decision.client_ip == parse_ip(client) and decision.notes == ()


def test_x_forwarded_for_lines_join_as_one_list() -> None:
    headers = [("x-forwarded-for", "203.0.113.66"), ("x-forwarded-for", "198.51.100.1")]
    assert admitted(behind_proxy().decide(PROXY, headers, "ws", 0)).client_ip == V4("198.51.100.1")


def test_the_forwarded_client_is_what_the_lists_judge() -> None:
    policy = behind_proxy(deny_ips=["198.51.100.0/24"])
    decision = policy.decide(PROXY, {"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}, "ws", 0)
    assert refused(decision, RefusalKind.IP_DENIED).client_ip == V4("198.51.100.1")


@pytest.mark.parametrize(
    "chain",
    ["", "   ", "198.51.100.1,", "not-an-ip", "198.51.100.1:http", "[2001:db8::1", "[2001:db8::1]x",
     "[2001:db8::1]:", "1.2.3.4:5:6", "\xff\xfe", "\x00", "198.51.100.1, , 10.0.0.1"],
)  # fmt: skip
def test_a_malformed_x_forwarded_for_is_treated_as_absent(chain: str) -> None:
    decision = admitted(
        behind_proxy().decide(PROXY, [(b"x-forwarded-for", chain.encode("latin-1"))], "ws", 0)
    )
    assert decision.client_ip == V4(PROXY)
    assert decision.notes == ("x-forwarded-for header malformed; treated as absent",)


@pytest.mark.parametrize(
    ("xff", "xfp", "scheme"),
    [
        ("198.51.100.1", "https", "wss"),
        ("198.51.100.1", "HTTP", "ws"),
        ("198.51.100.1, 10.0.0.1", "https", "wss"),  # one value from the edge: every hop
        ("198.51.100.1, 10.0.0.1", "https, http", "wss"),  # per hop, matched from the right
        ("198.51.100.1, 10.0.0.1", "wss, https, http", "wss"),  # a forged extra entry is not read
        ("198.51.100.1", "", "ws"),
    ],
)
def test_x_forwarded_proto_gives_the_clients_scheme(xff: str, xfp: str, scheme: str) -> None:
    headers = {"x-forwarded-for": xff, "x-forwarded-proto": xfp}
    assert admitted(behind_proxy().decide(PROXY, headers, "ws", 0)).scheme == scheme


def test_an_unknown_forwarded_proto_is_ignored_and_noted() -> None:
    headers = {"x-forwarded-for": "198.51.100.1", "x-forwarded-proto": "gopher"}
    decision = admitted(behind_proxy().decide(PROXY, headers, "wss", 0))
    assert decision.scheme == "wss"
    assert decision.notes == ("forwarded scheme 'gopher' not understood; ignored",)


def test_the_other_header_is_not_honoured() -> None:
    """A client behind an X-Forwarded-For proxy cannot pick its address with a forged Forwarded."""
    headers = {"forwarded": "for=10.9.9.9", "x-forwarded-for": "198.51.100.1"}
    assert admitted(behind_proxy().decide(PROXY, headers, "ws", 0)).client_ip == V4("198.51.100.1")
    xff_only = {"x-forwarded-for": "198.51.100.1"}
    forwarded = behind_proxy(proxy_header="forwarded")
    assert admitted(forwarded.decide(PROXY, xff_only, "ws", 0)).client_ip == V4(PROXY)


@pytest.mark.parametrize(
    ("value", "client", "scheme"),
    [
        ("for=198.51.100.1", "198.51.100.1", "ws"),
        ('for="198.51.100.1:4711";proto=https', "198.51.100.1", "wss"),
        ('For="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17", "ws"),
        ("for=[2001:db8::1]", "2001:db8::1", "ws"),  # unquoted brackets: lenient
        ("for=203.0.113.66, for=198.51.100.1;proto=https;by=10.0.0.1", "198.51.100.1", "wss"),
        ("for=198.51.100.1;proto=https, for=10.0.0.1;proto=http", "198.51.100.1", "wss"),
        ("for=garbage!, for=198.51.100.1", "198.51.100.1", "ws"),  # forged junk, unread
        ('for="\\1\\9\\8.51.100.1"', "198.51.100.1", "ws"),  # quoted-pair
        ("for = 198.51.100.1", None, "ws"),  # whitespace around '=' is not allowed: malformed
        ("for=198.51.100.1;", "198.51.100.1", "ws"),  # an empty pair is allowed (RFC 7239 4)
    ],
)
def test_forwarded_takes_the_right_most_untrusted_node(value: str, client: str | None, scheme: str) -> None:
    decision = admitted(behind_proxy(proxy_header="forwarded").decide(PROXY, {"Forwarded": value}, "ws", 0))
    assert decision.client_ip == (parse_ip(client) if client else V4(PROXY))
    assert decision.scheme == scheme


@pytest.mark.parametrize(
    ("value", "note"),
    [
        ("for=unknown", "names an unknown or obfuscated node"),
        ("for=_hidden", "names an unknown or obfuscated node"),
        ("proto=https", "names an unknown or obfuscated node"),
        ("for=198.51.100.1, for=_gateway", "names an unknown or obfuscated node"),
        ("", "malformed"),
        ("for=", "malformed"),
        ("for", "malformed"),
        ('for="198.51.100.1', "malformed"),
        ("for=198.51.100.1;for=198.51.100.2", "malformed"),
        ("for=198.51.100.1 proto=https", "malformed"),
        ("for=not-an-ip", "malformed"),
        ('for="[2001:db8::1"', "malformed"),
        ("for=198.51.100.1,", "malformed"),
        ("=198.51.100.1", "malformed"),
        ("for=\xff", "malformed"),
    ],
)
def test_a_malformed_or_opaque_forwarded_is_treated_as_absent(value: str, note: str) -> None:
    policy = behind_proxy(proxy_header="forwarded")
    decision = admitted(policy.decide(PROXY, [(b"forwarded", value.encode("latin-1"))], "ws", 0))
    assert decision.client_ip == V4(PROXY)
    if value:
        assert len(decision.notes) == 1 and note in decision.notes[0]


@given(st.binary(max_size=80), st.binary(max_size=40))
def test_hostile_forwarding_headers_never_raise(value: bytes, proto: bytes) -> None:
    for header in ("x-forwarded-for", "forwarded"):
        policy = behind_proxy(proxy_header=header, allow_origins=["https://ops.example.com"])
        headers = [(header.encode(), value), (b"x-forwarded-proto", proto), (b"origin", value)]
        decision = policy.decide(PROXY, headers, "ws", 0.0)
        assert isinstance(decision, Admit | Refuse)


@given(st.text(max_size=80))
def test_hostile_text_headers_never_raise(value: str) -> None:
    for header in ("x-forwarded-for", "forwarded"):
        policy = behind_proxy(proxy_header=header, allow_origins=["https://ops.example.com"])
        headers = {header: value, "x-forwarded-proto": value, "origin": value}
        assert isinstance(policy.decide(PROXY, headers, "ws", 0.0), Admit | Refuse)


# -- scheme and origin ---------------------------------------------------------------------------


def test_scheme_must_be_allowed() -> None:
    policy = AdmissionPolicy(allowed_schemes=["wss"])
    admitted(policy.decide("192.0.2.1", [], "WSS", 0))
    refusal = refused(policy.decide("192.0.2.1", [], "ws", 0), RefusalKind.SCHEME)
    assert refusal.reason == "scheme 'ws' refused; use wss"
    nothing = refused(
        AdmissionPolicy(allowed_schemes=[]).decide("192.0.2.1", [], "ws", 0), RefusalKind.SCHEME
    )
    assert nothing.reason == "scheme 'ws' refused; use nothing"


def test_origin_must_match_exactly_with_default_ports_and_any_host_case() -> None:
    policy = AdmissionPolicy(allow_origins=["https://ops.example.com", "http://localhost:8080"])
    for origin in ("https://ops.example.com", "https://OPS.example.com:443", "http://localhost:8080"):
        admitted(policy.decide("192.0.2.1", {"Origin": origin}, "ws", 0))
    for origin, reason in [
        ("https://evil.example.com", "Origin 'https://evil.example.com' is not allowed"),
        ("http://ops.example.com", "Origin 'http://ops.example.com' is not allowed"),
        ("https://ops.example.com:8443", "Origin 'https://ops.example.com:8443' is not allowed"),
        ("https://ops.example.com.evil.example", "is not allowed"),
        ("null", "opaque Origin 'null' refused"),
        ("https://ops.example.com/", "malformed Origin header 'https://ops.example.com/'"),
    ]:
        refusal = refused(policy.decide("192.0.2.1", {"Origin": origin}, "ws", 0), RefusalKind.ORIGIN)
        assert reason in refusal.reason


def test_a_repeated_origin_header_is_refused() -> None:
    policy = AdmissionPolicy(allow_origins=["https://ops.example.com"])
    headers = [(b"origin", b"https://ops.example.com"), (b"origin", b"https://evil.example")]
    refusal = refused(policy.decide("192.0.2.1", headers, "ws", 0), RefusalKind.ORIGIN)
    assert refusal.reason == "malformed Origin header: sent more than once"


def test_a_missing_origin_is_allowed_or_refused_by_the_flag() -> None:
    origins = ["https://ops.example.com"]
    admitted(AdmissionPolicy(allow_origins=origins).decide("192.0.2.1", [], "ws", 0))
    strict = AdmissionPolicy(allow_origins=origins, allow_missing_origin=False)
    assert refused(strict.decide("192.0.2.1", [], "ws", 0), RefusalKind.ORIGIN).reason == "no Origin header"


def test_origin_is_not_checked_without_a_list() -> None:
    admitted(AdmissionPolicy(allow_missing_origin=False).decide("192.0.2.1", {"origin": "null"}, "ws", 0))


# -- upgrade rate -------------------------------------------------------------------------------------


def test_upgrade_rate_per_address_answers_429_with_retry_after() -> None:
    policy = AdmissionPolicy(upgrade_rate="2/10s")
    assert all(isinstance(policy.decide("192.0.2.1", [], "ws", 0.0), Admit) for _ in range(2))
    refusal = refused(policy.decide("192.0.2.1", [], "ws", 0.0), RefusalKind.UPGRADE_RATE, 429)
    assert refusal.retry_after == 5 and refusal.headers() == [(b"retry-after", b"5")]
    assert refusal.reason == "too many upgrade requests from 192.0.2.1 (2/10s)"
    admitted(policy.decide("192.0.2.2", [], "ws", 0.0))  # another address has its own bucket
    refusal = refused(policy.decide("192.0.2.1", [], "ws", 4.99), RefusalKind.UPGRADE_RATE, 429)
    assert refusal.retry_after == 1  # never 0: at least a second
    admitted(policy.decide("192.0.2.1", [], "ws", 5.0))


def test_upgrade_rate_counts_the_forwarded_client_and_unknown_peers_share_a_bucket() -> None:
    policy = behind_proxy(upgrade_rate="1/60")
    admitted(policy.decide(PROXY, {"x-forwarded-for": "198.51.100.1"}, "ws", 0.0))
    admitted(policy.decide(PROXY, {"x-forwarded-for": "198.51.100.2"}, "ws", 0.0))
    refused(
        policy.decide(PROXY, {"x-forwarded-for": "198.51.100.1"}, "ws", 0.0), RefusalKind.UPGRADE_RATE, 429
    )
    admitted(policy.decide(None, [], "ws", 0.0))
    refusal = refused(policy.decide("junk", [], "ws", 0.0), RefusalKind.UPGRADE_RATE, 429)
    assert "an unknown address" in refusal.reason


def test_refused_requests_do_not_spend_the_upgrade_rate() -> None:
    policy = AdmissionPolicy(upgrade_rate="1/60", allowed_schemes=["wss"])
    for _ in range(5):
        refused(policy.decide("192.0.2.1", [], "ws", 0.0), RefusalKind.SCHEME)
    admitted(policy.decide("192.0.2.1", [], "wss", 0.0))


def test_per_address_buckets_are_bounded() -> None:
    policy = AdmissionPolicy(upgrade_rate="1/60", max_tracked_ips=3)
    for n in range(10):
        admitted(policy.decide(f"192.0.2.{n}", [], "ws", 0.0))
    assert policy._rate is not None and len(policy._rate) == 3
    admitted(policy.decide("192.0.2.0", [], "ws", 0.0))  # evicted, so it starts afresh

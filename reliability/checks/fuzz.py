"""Rows 2 and 3: the `Authorization` header, and request bodies and queries, fuzzed over HTTP.

The `Authorization` values go out on raw sockets, so bytes that http.client would refuse
(control characters, obs-text, stray whitespace) reach gunicorn as sent.
"""

import json
import zlib
from collections import Counter
from datetime import timedelta
from urllib.parse import quote, urlencode

from django.contrib.auth import get_user_model
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from generations.models import Generation
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.seed import (
    generation_in_state,
    key_create,
    owner_create,
    ready_generation,
    video_bytes,
)
from rotate import keys as key_format
from rotate.models import ApiKey
from rotate.services import api_key_revoke

FORBIDDEN_IN_FIELD = b"\x00\r\n"  # gunicorn rejects NUL; CR/LF end the field
# Control characters RFC 9110 §5.5 forbids in a field value (HTAB aside): the HTTP layer
# (gunicorn 27) refuses such a request with 400, in the envelope, before the app sees it.
CONTROL_IN_FIELD = frozenset(set(range(0x20)) - {0x09} | {0x7F})


def _fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# -- row 2: Authorization ------------------------------------------------------------------
def _checksummed(prefix: str, secret: str) -> str:
    body = f"{key_format.NAMESPACE}_{prefix}_{secret}"
    return body + key_format._base62(zlib.crc32(body.encode()), key_format.CHECKSUM_LENGTH)


def _auth_world() -> dict:
    owner, canary = owner_create("auth-fuzz")
    generation = ready_generation(owner, video_bytes(4000))
    revoked_key = key_create(owner, name="revoked")
    api_key_revoke(api_key=ApiKey.objects.get(prefix=key_format.key_prefix(revoked_key)))
    expired_key = key_create(owner, name="expired", expires_at=timezone.now() - timedelta(days=1))
    inactive = get_user_model().objects.create(username="auth-fuzz-inactive", is_active=False)
    inactive_key = key_create(inactive, name="inactive owner")
    return {
        "canary": canary,
        "prefix": key_format.key_prefix(canary),
        "generation": generation.pk,
        "dead_keys": [revoked_key, expired_key, inactive_key],
    }


def _token_strategy(world: dict) -> st.SearchStrategy[bytes]:
    canary: str = world["canary"]
    alphabet = key_format.ALPHABET
    position = st.integers(0, len(canary) - 1)
    mutated = st.one_of(
        position.map(lambda i: canary[:i]),  # truncated
        st.tuples(position, st.sampled_from(alphabet)).map(
            lambda t: canary[: t[0]] + t[1] + canary[t[0] + 1 :]
        ),  # one character replaced (may be the same: then excluded as valid)
        st.text(alphabet, min_size=1, max_size=3).map(lambda s: canary + s),
        position.map(lambda i: canary[:i] + canary[i].swapcase() + canary[i + 1 :]),
        st.tuples(position, st.sampled_from([" ", "\t", "\x0b", ",", "\x7f", "é"])).map(
            lambda t: canary[: t[0]] + t[1] + canary[t[0] :]
        ),
    )
    crafted = st.one_of(
        # right format and checksum, real prefix, wrong secret: reaches the digest compare
        st.text(alphabet, min_size=33, max_size=33).map(lambda s: _checksummed(world["prefix"], s)),
        # right format and checksum, unknown prefix
        st.tuples(
            st.text(alphabet, min_size=12, max_size=12),
            st.text(alphabet, min_size=33, max_size=33),
        ).map(lambda t: _checksummed(*t)),
        st.sampled_from(world["dead_keys"]),  # revoked, expired, inactive owner
    )
    text = st.one_of(
        mutated,
        crafted,
        st.text(max_size=80),
        st.text(st.characters(max_codepoint=255), max_size=200),
        st.just(canary + " " + canary),
        st.just(canary),  # with a wrong scheme or separator only
    )
    return text.map(
        lambda s: s.encode("utf-8") if any(ord(c) > 255 for c in s) else s.encode("latin-1")
    )


def _authorization_values(world: dict) -> st.SearchStrategy[list[bytes]]:
    scheme = st.sampled_from(
        [b"Bearer", b"bearer", b"BEARER", b"Basic", b"Token", b"Bearer:", b"Bearer=", b"", b"Bear"]
    )
    separator = st.sampled_from([b" ", b"  ", b"\t", b"", b" \x0b", b"\x0c", b"="])
    structured = st.tuples(scheme, separator, _token_strategy(world)).map(lambda t: b"".join(t))
    raw = st.binary(max_size=300)
    long = st.integers(1000, 8000).map(lambda n: b"Bearer " + b"A" * n)
    value = st.one_of(structured, structured, raw, long).map(
        lambda v: bytes(b for b in v if b not in FORBIDDEN_IN_FIELD)
    )
    return st.lists(value, min_size=1, max_size=2)


def _authenticates(values: list[bytes], active: set[bytes]) -> bool:
    """Whether the server's rule (split on ASCII whitespace, `bearer` any case) sees a live key."""
    combined = b",".join(value.strip(b" \t") for value in values)
    parts = combined.split()
    return len(parts) == 2 and parts[0].lower() == b"bearer" and parts[1] in active


def _targets(world: dict) -> list[tuple[str, str, bytes]]:
    gid = world["generation"]
    body = json.dumps({"videoIds": [gid]}).encode()
    return [
        ("GET", f"{client.API}/generations/download?ids={gid}", b""),
        ("POST", f"{client.API}/generations/download", body),
        ("GET", f"{client.API}/generations/{gid}", b""),
        ("GET", f"{client.API}/generations/{gid}/status", b""),
        ("GET", f"{client.API}/generations?page=1&pageSize=20", b""),
    ]


def _raw(method: str, path: str, body: bytes, header_name: bytes, values: list[bytes]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [header_name + b": " + value for value in values]
    if body:
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def check_authorization_fuzz(context: Context) -> Row:
    world = _auth_world()
    port = context.web_port
    active = {world["canary"].encode()}
    targets = _targets(world)
    reference = client.request(port, "GET", targets[0][1], headers={"Authorization": "Bearer x"})
    statuses: Counter[int] = Counter()
    violations = Violations()

    @_fuzz_settings(context.budget.auth_examples)
    @given(
        values=_authorization_values(world),
        target=st.sampled_from(targets),
        header_name=st.sampled_from([b"Authorization", b"authorization", b"AUTHORIZATION"]),
    )
    def example(values: list[bytes], target: tuple[str, str, bytes], header_name: bytes) -> None:
        assume(not _authenticates(values, active))
        method, path, body = target
        reply = client.raw_request(port, _raw(method, path, body, header_name, values))
        statuses[reply.status] += 1
        if any(byte in CONTROL_IN_FIELD for value in values for byte in value.strip(b" \t")):
            refused = reply.status == 400 and reply.is_envelope
        else:
            refused = (
                reply.status == 401
                and reply.is_envelope
                and reply.body == reference.body
                and reply.headers.get("www-authenticate") == "Bearer"
            )
        if not refused:
            violations.add(f"{reply.status} {reply.body[:120]!r} for {method} {path} {values!r}")

    example()
    # Bytes no HTTP field may carry: the HTTP layer must refuse them, never the app crash.
    layer: Counter[int] = Counter()
    for n in range(20):
        value = b"Bearer " + world["canary"].encode()[: 10 + n] + b"\x00" + b"x" * n
        method, path, body = targets[n % len(targets)]
        layer[
            client.raw_request(port, _raw(method, path, body, b"Authorization", [value])).status
        ] += 1
    total = sum(statuses.values())
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    server_errors += sum(count for status, count in layer.items() if status >= 500)
    successes = statuses[200] + layer[200]
    passed = total > 0 and not violations and server_errors == 0 and successes == 0
    return Row(
        name="auth_fuzz",
        check="`Authorization` fuzz (Hypothesis, raw sockets)",
        scale=f"{total} examples over E1–E5 (+20 with NUL)",
        figure=f"{total - violations.count}/{total} × 401 with the one envelope body and "
        f"`WWW-Authenticate: Bearer` (or, for a control character, the HTTP layer's 400 "
        f"envelope: {statuses[400]}); {server_errors} × 5xx; {successes} × 200; "
        f"NUL in the header: {dict(layer)} (gunicorn refuses the request)",
        passed=passed,
        details={
            "statuses": dict(statuses),
            "nul_statuses": dict(layer),
            "violations": violations.count,
            "samples": violations.samples,
        },
    )


# -- row 3: bodies and queries --------------------------------------------------------------
def _input_world() -> dict:
    owner, raw_key = owner_create("input-fuzz")
    other, _ = owner_create("input-fuzz-other")
    past = timezone.now() - timedelta(hours=3)
    ready = [
        ready_generation(owner, video_bytes(3000 + n), external_id=f"v{n}").pk for n in range(4)
    ]
    expired = [ready_generation(owner, video_bytes(2000), created_at=past).pk for _ in range(2)]
    rotating = [generation_in_state(owner, Generation.Status.ROTATING).pk]
    foreign = [ready_generation(other, video_bytes(2500)).pk]
    missing = [max(*ready, *expired, *rotating, *foreign) + 10_000]
    return {
        "key": raw_key,
        "ready": ready,
        "expired": expired,
        "pool": ready + expired + rotating + foreign + missing,
    }


def _id_values(pool: list[int]) -> st.SearchStrategy:
    pool_ids = st.sampled_from(pool)
    return st.one_of(
        pool_ids,
        pool_ids.map(str),
        pool_ids.map(lambda n: f" {n}"),
        pool_ids.map(float),
        st.integers(-(2**70), 2**70),
        st.sampled_from([0, -1, 2**63 - 1, 2**63, "1e3", "0x10", "１２", "1.0", "", " ", "+1"]),
        st.text(max_size=25),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.lists(pool_ids, max_size=2),
        st.dictionaries(st.text(max_size=3), pool_ids, max_size=2),
    )


def _json_values() -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=15,
    )


def _body_strategy(pool: list[int]) -> st.SearchStrategy[tuple[str | None, bytes]]:
    ids = st.one_of(st.lists(_id_values(pool), max_size=105), _json_values())
    document = st.one_of(
        st.fixed_dictionaries({"videoIds": ids}),
        st.fixed_dictionaries({"ids": ids}),
        st.fixed_dictionaries({}, optional={"videoIds": ids, "ids": ids, "extra": _json_values()}),
        _json_values(),
    )
    as_json = document.map(lambda d: json.dumps(d).encode())
    truncated = st.tuples(as_json, st.integers(0, 40)).map(lambda t: t[0][: t[1]])
    form_fields = st.lists(
        st.tuples(st.sampled_from(["ids", "videoIds", "x"]), st.text(max_size=30)), max_size=8
    )
    form = form_fields.map(lambda fields: urlencode(fields).encode())
    many_fields = st.integers(990, 1100).map(lambda n: b"&".join([b"ids=1"] + [b"a=1"] * n))
    json_types = st.sampled_from(["application/json", "application/json; charset=utf-8"])
    form_type = "application/x-www-form-urlencoded"
    return st.one_of(
        st.tuples(json_types, as_json),
        st.tuples(json_types, as_json),
        st.tuples(json_types, truncated),
        st.tuples(json_types, st.binary(max_size=200)),
        st.tuples(st.just(form_type), form),
        st.tuples(st.just(form_type), many_fields),
        st.tuples(
            st.sampled_from(
                [
                    None,
                    "text/plain",
                    "multipart/form-data",
                    "multipart/form-data; boundary=x",
                    "application/xml",
                    "application/json-patch+json",
                    "*/*",
                    "image/png",
                ]
            ),
            st.one_of(as_json, st.binary(max_size=200)),
        ),
    )


_QUERY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


def _query_strategy(pool: list[int]) -> st.SearchStrategy[str]:
    token = st.one_of(
        st.sampled_from(pool).map(str),
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(["", " ", " 1 ", "\t2", "1.0", "%", "%zz", "0", "9" * 40, "+1"]),
        _QUERY_TEXT,
    )
    value = st.lists(token, min_size=0, max_size=110).map(",".join)
    key = st.sampled_from(["ids", "ids", "videoIds", "IDS", "ids[]", "id", "page", ""])
    pairs = st.lists(st.tuples(key, value), max_size=4)
    encoded = pairs.map(lambda ps: "&".join(f"{quote(k)}={quote(v, safe=',')}" for k, v in ps))
    many = st.integers(990, 1100).map(lambda n: "ids=1&" + "&".join(["a"] * n))
    raw_percent = st.sampled_from(["ids=%", "ids=%zz", "ids=1%2C%2C2", "ids=%00", "ids=1&ids"])
    return st.one_of(encoded, encoded, encoded, many, raw_percent).filter(lambda q: len(q) < 3800)


def _range_headers() -> st.SearchStrategy[dict[str, str]]:
    number = st.one_of(st.integers(0, 10_000), st.integers(0, 10**40)).map(str)
    range_value = st.one_of(
        st.tuples(number, number).map(lambda t: f"bytes={t[0]}-{t[1]}"),
        number.map(lambda n: f"bytes={n}-"),
        number.map(lambda n: f"bytes=-{n}"),
        st.just("bytes=0-0,5-9"),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    )
    if_range = st.one_of(
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=70),
        st.just("Wed, 21 Oct 2015 07:28:00 GMT"),
    )
    return st.fixed_dictionaries({}, optional={"Range": range_value, "If-Range": if_range})


def _page_query() -> st.SearchStrategy[str]:
    number = st.one_of(st.integers(-5, 200).map(str), st.integers(0, 10**40).map(str), _QUERY_TEXT)
    return st.fixed_dictionaries(
        {}, optional={"page": number, "pageSize": number, "x": number}
    ).map(lambda d: urlencode(d))


ALLOWED = {200, 206, 400, 404, 416}


def check_input_fuzz(context: Context) -> Row:
    world = _input_world()
    port = context.web_port
    auth = client.bearer(world["key"])
    pool = world["pool"]
    path_ids = st.one_of(
        st.sampled_from(pool).map(str), st.text("0123456789", min_size=1, max_size=40)
    )
    request = st.one_of(
        st.tuples(st.just("E1"), _body_strategy(pool)),
        st.tuples(st.just("E2"), st.tuples(_query_strategy(pool), _range_headers())),
        st.tuples(st.just("E3"), st.tuples(path_ids, _range_headers())),
        st.tuples(st.just("E4"), path_ids),
        st.tuples(st.just("E5"), _page_query()),
    )
    statuses: Counter[str] = Counter()
    violations = Violations()
    expired = {str(gid) for gid in world["expired"]}

    @_fuzz_settings(context.budget.input_examples)
    @given(request=request)
    def example(request: tuple) -> None:
        endpoint, spec = request
        if endpoint == "E1":
            content_type, body = spec
            headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
            path = f"{client.API}/generations/download"
            reply = client.request(port, "POST", path, headers=headers, body=body)
            what = f"POST {content_type} {body[:200]!r}"
        elif endpoint == "E2":
            query, extra = spec
            path = f"{client.API}/generations/download?{query}"
            reply = client.request(port, "GET", path, headers={**auth, **extra})
            what = f"GET {path[:300]} {extra}"
        elif endpoint in {"E3", "E4"}:
            gid, extra = spec if endpoint == "E3" else (spec, {})
            path = f"{client.API}/generations/{gid}" + ("/status" if endpoint == "E4" else "")
            reply = client.request(port, "GET", path, headers={**auth, **extra})
            what = f"GET {path} {extra}"
        else:
            path = f"{client.API}/generations?{spec}"
            reply = client.request(port, "GET", path, headers=auth)
            what = f"GET {path}"
        statuses[f"{endpoint} {reply.status}"] += 1
        allowed = ALLOWED | ({410} if endpoint == "E3" else set())
        if reply.status not in allowed:
            violations.add(f"{reply.status} {reply.body[:200]!r} for {what}")
        elif endpoint == "E3" and (reply.status == 410) != (spec[0].lstrip("0") in expired):
            violations.add(f"E3 410 where not right (or missing): {reply.status} for {what}")
        elif reply.status >= 400 and not reply.is_envelope:
            violations.add(f"{reply.status} without the envelope: {reply.body[:200]!r} for {what}")
        elif not reply.complete:
            violations.add(f"{reply.status} body cut short for {what}")

    example()
    total = sum(statuses.values())
    server_errors = sum(count for key, count in statuses.items() if key.split()[1].startswith("5"))
    return Row(
        name="input_fuzz",
        check="request-body and query fuzz (Hypothesis)",
        scale=f"{total} examples over E1 bodies, E2 queries + Range/If-Range, E3, E4, E5",
        figure=f"{violations.count} responses outside 200/206/400/404/416 (+410 for E3 when "
        f"right) or without the envelope; {server_errors} × 5xx",
        passed=total > 0 and not violations and server_errors == 0,
        details={
            "statuses": dict(sorted(statuses.items())),
            "violations": violations.count,
            "samples": violations.samples,
        },
    )

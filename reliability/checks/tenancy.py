"""Row 1: the cross-tenant property over HTTP (Hypothesis).

Four owners share 40 generations in every state. Each example: one owner asks for up to 100
IDs mixing its own, other owners', missing and repeated ones, through one of the four request
shapes (E1 JSON, E1 form, E2 comma list, E2 repeated). Then:

- exact partition: every distinct ID lands in the archive, X-Skipped-Not-Ready or
  X-Skipped-Not-Found as the contract says, in request order; the archive holds exactly the
  caller's ready videos, byte for byte, in request order;
- foreign bytes: no byte tag of another owner's video appears anywhere in the response;
- foreign ≡ nonexistent: the same request with every foreign ID swapped for a missing one
  gives the same status, body and headers (the swapped IDs aside), and so do E3 and E4.
"""

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generations.models import Generation
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.seed import generation_in_state, owner_create, ready_generation, video_bytes

OWNERS = 4
PER_OWNER = 10  # 40 generations
VOLATILE = {"date", "x-request-id", "content-disposition"}


@dataclass(frozen=True)
class Item:
    pk: int
    owner: int
    place: str  # for its owner: archive | not_ready | not_found
    data: bytes = b""
    tag: bytes = b""


def build_world() -> tuple[list[str], dict[int, Item]]:
    keys: list[str] = []
    items: dict[int, Item] = {}
    past = timezone.now() - timedelta(hours=3)
    for index in range(OWNERS):
        owner, raw_key = owner_create(f"tenant-{index}")
        keys.append(raw_key)
        for n in range(PER_OWNER):
            kind = n % 5
            if kind in (0, 1):  # ready, with a duplicate external id across owners
                tag = f"tenant{index}-video{n}"
                data = video_bytes(1500 + 97 * n, tag)
                generation = ready_generation(owner, data, external_id=f"mug-{n % 3}")
                items[generation.pk] = Item(
                    generation.pk, index, "archive", data, f"<<{tag}>>".encode()
                )
            elif kind == 2:
                status = Generation.Status.ROTATING if n % 2 else Generation.Status.STARTING
                generation = generation_in_state(owner, status)
                items[generation.pk] = Item(generation.pk, index, "not_ready")
            elif kind == 3:
                status = Generation.Status.FAILED if n % 2 else Generation.Status.CANCELED
                generation = generation_in_state(owner, status)
                items[generation.pk] = Item(generation.pk, index, "not_found")
            else:  # ready but past expiry: not found, whatever its owner
                tag = f"tenant{index}-expired{n}"
                data = video_bytes(1200, tag)
                generation = ready_generation(owner, data, created_at=past)
                items[generation.pk] = Item(
                    generation.pk, index, "not_found", data, f"<<{tag}>>".encode()
                )
    return keys, items


def download(port: int, raw_key: str, ids: list[int], shape: str) -> client.Reply:
    path = f"{client.API}/generations/download"
    headers = client.bearer(raw_key)
    if shape == "json":
        body = json.dumps({"videoIds": ids}).encode()
        headers["Content-Type"] = "application/json"
        return client.request(port, "POST", path, headers=headers, body=body)
    if shape == "form":
        body = urlencode([("ids", ",".join(map(str, ids)))]).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return client.request(port, "POST", path, headers=headers, body=body)
    if shape == "comma":
        return client.request(port, "GET", f"{path}?ids={','.join(map(str, ids))}", headers=headers)
    query = urlencode([("ids", gid) for gid in ids])
    return client.request(port, "GET", f"{path}?{query}", headers=headers)


def comparable(reply: client.Reply, swap: dict[int, int]) -> tuple:
    headers = {k: v for k, v in reply.headers.items() if k not in VOLATILE}
    if "x-skipped-not-found" in headers:
        headers["x-skipped-not-found"] = ",".join(
            str(swap.get(int(gid), int(gid))) for gid in headers["x-skipped-not-found"].split(",")
        )
    return reply.status, reply.body, sorted(headers.items())


def check_cross_tenant(context: Context) -> Row:
    keys, items = build_world()
    port = context.web_port
    top = max(items)
    missing = [top + 1000 + n for n in range(150)] + [2**63 - 1, 10**18]
    pool = [*items, *missing[:20], 2**63 - 1]
    tally = {"examples": 0, "requests": 0, "ids": 0, "foreign_ids": 0, "archives": 0}
    violations = Violations()
    violation = violations.add
    foreign_bytes = 0

    @settings(
        max_examples=context.budget.tenancy_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        caller=st.integers(0, OWNERS - 1),
        ids=st.lists(st.sampled_from(pool), min_size=1, max_size=100),
        shape=st.sampled_from(["json", "form", "comma", "repeated"]),
    )
    def example(caller: int, ids: list[int], shape: str) -> None:
        nonlocal foreign_bytes
        tally["examples"] += 1
        distinct = list(dict.fromkeys(ids))
        tally["ids"] += len(distinct)

        def place(gid: int) -> str:
            item = items.get(gid)
            return "not_found" if item is None or item.owner != caller else item.place

        archived = [gid for gid in distinct if place(gid) == "archive"]
        not_ready = [gid for gid in distinct if place(gid) == "not_ready"]
        not_found = [gid for gid in distinct if place(gid) == "not_found"]
        reply = download(port, keys[caller], ids, shape)
        tally["requests"] += 1
        where = f"owner {caller} {shape} {ids}"
        if reply.headers.get("x-skipped-not-ready", "") != ",".join(map(str, not_ready)):
            violation(f"not-ready header {reply.headers.get('x-skipped-not-ready')!r}: {where}")
        if reply.headers.get("x-skipped-not-found", "") != ",".join(map(str, not_found)):
            violation(f"not-found header {reply.headers.get('x-skipped-not-found')!r}: {where}")
        for item in items.values():
            if item.owner != caller and item.tag and item.tag in reply.body:
                foreign_bytes += len(item.data)
                violation(f"foreign video {item.pk} in the response: {where}")
        if archived:
            if reply.status != 200 or not reply.complete:
                violation(f"status {reply.status}, complete={reply.complete}: {where}")
            else:
                tally["archives"] += 1
                with zipfile.ZipFile(io.BytesIO(reply.body)) as archive:
                    contents = [archive.read(info) for info in archive.infolist()]
                if contents != [items[gid].data for gid in archived]:
                    violation(f"archive content is not the caller's ready videos: {where}")
        elif reply.status != 404 or not reply.is_envelope:
            violation(f"expected the 404 envelope, got {reply.status}: {where}")
        # foreign ≡ nonexistent
        foreign = [gid for gid in distinct if gid in items and items[gid].owner != caller]
        tally["foreign_ids"] += len(foreign)
        if not foreign:
            return
        unused = iter(gid for gid in missing if gid not in distinct)
        swap = {gid: next(unused) for gid in foreign}
        twin = download(port, keys[caller], [swap.get(gid, gid) for gid in ids], shape)
        tally["requests"] += 1
        back = {new: old for old, new in swap.items()}
        if comparable(reply, {}) != comparable(twin, back):
            violation(f"foreign and missing IDs answered differently: {where}")
        foreign_id, missing_id = foreign[0], swap[foreign[0]]
        for suffix in ("", "/status"):
            answers = [
                client.request(
                    port,
                    "GET",
                    f"{client.API}/generations/{gid}{suffix}",
                    headers=client.bearer(keys[caller]),
                )
                for gid in (foreign_id, missing_id)
            ]
            tally["requests"] += 2
            if comparable(answers[0], {}) != comparable(answers[1], {}) or answers[0].status != 404:
                violation(f"E3/E4{suffix} foreign {foreign_id} ≠ missing {missing_id}")

    example()
    passed = not violations and foreign_bytes == 0 and tally["examples"] > 0
    return Row(
        name="tenancy",
        check="cross-tenant property (Hypothesis, HTTP)",
        scale=f"{tally['examples']} examples: {OWNERS} owners, {len(items)} generations, "
        "≤100 IDs own/foreign/missing/duplicate, 4 request shapes",
        figure=f"{foreign_bytes} foreign bytes; {violations.count} partition/equivalence "
        f"violations over {tally['ids']} IDs ({tally['foreign_ids']} foreign), "
        f"{tally['requests']} requests, {tally['archives']} archives checked byte for byte",
        passed=passed,
        details={
            **tally,
            "foreign_bytes": foreign_bytes,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )

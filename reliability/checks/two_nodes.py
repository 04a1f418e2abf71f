"""Row "two app nodes": two gunicorn nodes behind one nginx `upstream`, sharing PostgreSQL,
Redis and an S3 server (moto), take downloads, creates and cancels of two owners; one node
is SIGKILLed mid-traffic. No byte crosses tenants, no generation is lost or created twice,
and a download cut by the dead node fails visibly, then resumes on the other with `Range`.

Clients behave as the docs ask: a download cut short resumes with `Range` and `If-Range`
(the ETag is the same on either node); a create that got no answer (nginx's 502: it never
replays a POST on another node) is retried with the same Idempotency-Key.
"""

import hashlib
import http.client
import json
import os
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from signal import SIGKILL

from generations.models import Generation
from generations.services import generation_create
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.seed import bulk_create_body, owner_create, video_bytes
from rotate.models import CreditEntry
from rotate.services import credit_grant
from tests.s3_server import CREDENTIALS, REGION, bucket_create, moto_server, s3_admin_client

OWNERS = 2
PACE = 12 << 20  # bytes per second a downloading client reads
KILL_AFTER = 3.0  # seconds into the traffic
TRAFFIC_SECONDS = 10.0
RETRIES = 8


@dataclass
class Tenant:
    tag: str
    raw_key: str
    owner: object
    ids: list[int]
    reference: str = ""  # sha256 of its archive, downloaded whole before the traffic
    etag: str = ""
    created: list[int] = field(default_factory=list)


@dataclass
class Tally:
    downloads: int = 0
    cut: int = 0  # ended early: the node died under them
    complete_looking_cut: int = 0  # a cut that looked complete (Content-Length matched)
    resumed: int = 0
    mismatched: int = 0
    foreign_bytes: int = 0
    creates: int = 0
    create_retries: int = 0
    cancels: int = 0
    failures: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def _seed(bucket: str, endpoint_url: str, videos: int, size: int) -> list[Tenant]:
    s3 = s3_admin_client(endpoint_url)
    tenants = []
    for n in range(OWNERS):
        tag = f"two-nodes-owner-{n}-{uuid.uuid4().hex[:8]}"
        owner, raw_key = owner_create(f"two-nodes-{n}")
        credit_grant(owner=owner, amount=10_000, note="reliability")
        ids = []
        for v in range(videos):
            data = video_bytes(size, f"{tag}-{v}")
            generation = generation_create(owner=owner, external_id=f"{tag}-{v}")
            name = f"videos/two-nodes/{generation.pk}.mp4"
            s3.put_object(Bucket=bucket, Key=name, Body=data)
            Generation.objects.filter(pk=generation.pk).update(
                video=name,
                video_size=size,
                video_crc32=zlib.crc32(data),
                status=Generation.Status.SUCCEEDED,
            )
            ids.append(generation.pk)
        tenants.append(Tenant(tag, raw_key, owner, ids))
    return tenants


def _archive_path(tenant: Tenant, foreign: Tenant) -> str:
    ids = ",".join(str(pk) for pk in [*tenant.ids, foreign.ids[0]])
    return f"{client.API}/generations/download?ids={ids}"


def _download(
    port: int, tenant: Tenant, path: str, tally: Tally, paced: bool, resume_port: int = 0
) -> bytes | None:
    """The whole archive, resuming with Range + If-Range after a cut (on `resume_port` when
    given); None if it failed."""
    body = b""
    for attempt in range(RETRIES):
        if attempt and resume_port:
            port = resume_port
        headers = client.bearer(tenant.raw_key)
        if body:
            headers.update({"Range": f"bytes={len(body)}-", "If-Range": tenant.etag})
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            if response.status not in (200, 206) or (body and response.status != 206):
                tally.failures[f"download {response.status}"] += 1
                time.sleep(0.2)
                continue
            if not tenant.etag:
                tenant.etag = response.getheader("ETag", "")
            expected = int(response.getheader("Content-Length", "-1"))
            received = 0
            started = time.monotonic()
            try:
                while chunk := response.read(256 << 10):
                    body += chunk
                    received += len(chunk)
                    if paced:
                        time.sleep(max(0.0, started + received / PACE - time.monotonic()))
            except (http.client.IncompleteRead, OSError):
                pass
            if received == expected:
                return body
            tally.add(cut=1)
            if received > expected >= 0:
                tally.add(complete_looking_cut=1)
        except (http.client.HTTPException, OSError) as exc:
            tally.failures[f"download {type(exc).__name__}"] += 1
            time.sleep(0.2)
        finally:
            connection.close()
        if body:
            tally.add(resumed=1)
    return None


def _verified(tenant: Tenant, foreign: Tenant, body: bytes | None, tally: Tally) -> None:
    tally.add(downloads=1)
    if body is None or hashlib.sha256(body).hexdigest() != tenant.reference:
        tally.add(mismatched=1)
    if body is not None and foreign.tag.encode() in body:
        tally.add(foreign_bytes=1)


def _downloader(port: int, tenant: Tenant, foreign: Tenant, stop: threading.Event, tally: Tally):
    path = _archive_path(tenant, foreign)
    while not stop.is_set():
        _verified(tenant, foreign, _download(port, tenant, path, tally, paced=True), tally)


def _pinned(node_port: int, nginx_port: int, tenant: Tenant, foreign: Tenant, tally: Tally):
    """One download straight from the node about to die, resumed through nginx (which then
    has only the other node): a cut is certain, whatever nginx's spreading did."""
    path = _archive_path(tenant, foreign)
    body = _download(node_port, tenant, path, tally, paced=True, resume_port=nginx_port)
    _verified(tenant, foreign, body, tally)


def _answered(send: Callable[[], client.Reply], tally: Tally, what: str) -> client.Reply | None:
    """`send()` until a node answers (nginx says 502 while the dead one is tried)."""
    for attempt in range(RETRIES):
        reply = send()
        if reply.status not in (0, 502, 503, 504):
            return reply
        tally.add(create_retries=attempt == 0 and what == "create")
        time.sleep(0.3)
    tally.failures[f"{what}: no answer"] += 1
    return None


def _creator(port: int, tenant: Tenant, stop: threading.Event, tally: Tally):
    while not stop.is_set():
        key = uuid.uuid4().hex
        body = bulk_create_body(f"{tenant.tag}-new", 2)
        send = partial(client.generations_post, port, tenant.raw_key, body, key)
        reply = _answered(send, tally, "create")
        if reply is None or reply.status != 200:
            tally.failures[f"create {reply and reply.status}"] += 1
            continue
        ids = [item["id"] for item in json.loads(reply.body)["data"]["generations"]]
        tenant.created += ids
        tally.add(creates=1)
        for pk in ids:
            path = f"{client.API}/generations/{pk}/cancel"
            cancel = partial(
                client.request, port, "POST", path, headers=client.bearer(tenant.raw_key)
            )
            answer = _answered(cancel, tally, "cancel")
            if answer is not None and answer.status == 200:
                tally.add(cancels=1)
            else:
                tally.failures[f"cancel {answer and answer.status}"] += 1


def check_two_nodes(context: Context) -> Row:
    campaign, violations = context.campaign, Violations()
    videos, size = context.budget.two_node_videos, context.budget.two_node_video_bytes
    tally = Tally()
    with moto_server() as endpoint_url:
        bucket = bucket_create(endpoint_url)
        s3_env = {
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["access_key"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["secret_key"],
            "AWS_DEFAULT_REGION": REGION,
        }
        tenants = _seed(bucket, endpoint_url, videos, size)
        nodes = [
            campaign.gunicorn_start(f"web-node-{n}", f"rotate-reliability-node-{n}", **s3_env)
            for n in (1, 2)
        ]
        nginx = campaign.nginx_start(*(node.port or 0 for node in nodes), name="nginx-nodes")
        port = nginx.port or 0
        try:
            # given each tenant's archive, downloaded whole once (its reference bytes)
            for tenant, foreign in zip(tenants, tenants[::-1], strict=True):
                body = _download(port, tenant, _archive_path(tenant, foreign), tally, paced=False)
                if body is None:
                    raise RuntimeError("the reference download failed")
                tenant.reference = hashlib.sha256(body).hexdigest()
            # when both tenants download, create and cancel through nginx, and node 1 dies
            stop = threading.Event()
            workers = [
                threading.Thread(target=target, args=args)
                for tenant, foreign in zip(tenants, tenants[::-1], strict=True)
                for target, args in (
                    (_downloader, (port, tenant, foreign, stop, tally)),
                    (_downloader, (port, tenant, foreign, stop, tally)),
                    (_creator, (port, tenant, stop, tally)),
                )
            ]
            for worker in workers:
                worker.start()
            time.sleep(KILL_AFTER - 1.0)
            pinned = [
                threading.Thread(
                    target=_pinned, args=(nodes[0].port or 0, port, tenant, foreign, tally)
                )
                for tenant, foreign in zip(tenants, tenants[::-1], strict=True)
            ]
            for worker in pinned:
                worker.start()
            workers += pinned
            time.sleep(1.0)
            os.killpg(nodes[0].pid, SIGKILL)
            time.sleep(TRAFFIC_SECONDS - KILL_AFTER)
            stop.set()
            for worker in workers:
                worker.join(120)
        finally:
            for service in (nginx, *nodes):
                service.stop()
    # then every generation created is there once, canceled and refunded; bytes stayed home
    created = sum(len(tenant.created) for tenant in tenants)
    for tenant in tenants:
        rows = Generation.objects.filter(owner=tenant.owner, pk__in=tenant.created)
        if rows.count() != len(tenant.created) or len(set(tenant.created)) != len(tenant.created):
            violations.add(f"{tenant.tag}: {len(tenant.created)} created, {rows.count()} rows")
        extra = Generation.objects.filter(owner=tenant.owner).exclude(
            pk__in=[*tenant.ids, *tenant.created]
        )
        if extra.exists():
            violations.add(f"{tenant.tag}: {extra.count()} rows no answer announced")
        not_canceled = rows.exclude(status=Generation.Status.CANCELED, refunded=True).count()
        if not_canceled:
            violations.add(f"{tenant.tag}: {not_canceled} created rows not canceled+refunded")
        charges = CreditEntry.objects.filter(account__owner=tenant.owner, kind="charge").count()
        if charges != len(tenant.created) // 2:
            violations.add(f"{tenant.tag}: {charges} charges for {len(tenant.created)} rows")
    if tally.mismatched or tally.foreign_bytes or tally.complete_looking_cut:
        violations.add(f"downloads: {tally.mismatched} wrong, {tally.foreign_bytes} foreign")
    if tally.failures:
        violations.add(f"failures: {dict(tally.failures)}")
    passed = not violations and tally.cut > 0 and tally.resumed >= tally.cut
    return Row(
        name="two_nodes",
        check="two app nodes behind nginx, one killed (PostgreSQL, Redis, S3)",
        scale=f"2 gunicorn nodes on moto S3; {OWNERS} owners × 2 paced downloaders "
        f"({videos} × {size >> 20} MB + 1 foreign ID) and 1 creator (E6 then E9 per "
        f"generation), all through nginx, + 1 download per owner straight from node 1; "
        f"node 1 SIGKILLed {KILL_AFTER:g} s into {TRAFFIC_SECONDS:g} s",
        figure=f"{tally.downloads} downloads: {tally.foreign_bytes} with foreign bytes, "
        f"{tally.mismatched} not byte-identical to the reference; {tally.cut} cut by the "
        f"dead node (0 complete-looking: {tally.complete_looking_cut == 0}), resumed with "
        f"Range {tally.resumed}×; {tally.creates} creates ({created} generations, "
        f"{tally.create_retries} retried with the same Idempotency-Key), {tally.cancels} "
        f"cancels; {violations.count} violations",
        passed=passed,
        details={"violations": violations.samples, "failures": dict(tally.failures)},
    )

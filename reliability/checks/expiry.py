"""Rows 8 and 9: downloads racing the expiry sweep, and the sweep at scale on PostgreSQL.

The sweep runs as in production: a Celery worker with embedded beat on the campaign's
Redis, every second (EXPIRY_SWEEP_INTERVAL=1), plus `manage.py generations_expire`
processes for the scale row.
"""

import http.client
import io
import re
import threading
import time
import zipfile
from datetime import timedelta
from pathlib import Path

from django.db.models import Q
from django.utils import timezone

from generations.conf import generations_settings
from generations.models import Generation
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import PYTHON, ROOT, Service, popen, wait_until
from reliability.faults import fault_plan_write
from reliability.seed import due_rows, owner_create, ready_generation, video_bytes

SWEEP_INTERVAL = 1.0
FAILED_DELETE = re.compile(r"deleting the video of generation (\d+) failed \(attempt (\d+)")


def celery_running(context: Context) -> Service:
    """The Celery worker with beat, started once and ready to consume."""
    if context.celery is None or context.celery.process is None:
        log = context.campaign.log("celery")
        context.celery = context.campaign.celery_start()
        ready = wait_until(lambda: log.exists() and " ready." in log.read_text(), 60, 0.2)
        if ready is None:
            raise RuntimeError(f"the Celery worker did not become ready; see {log}")
    return context.celery


def orphans(videos: Path) -> tuple[list[str], list[int]]:
    """Files no row points at, and rows pointing at a file that is not there."""
    on_disk = {path.relative_to(videos).as_posix() for path in videos.rglob("*") if path.is_file()}
    referenced = dict(Generation.objects.exclude(video="").values_list("video", "pk").iterator())
    stray = sorted(on_disk - set(referenced))
    missing = sorted(pk for name, pk in referenced.items() if name not in on_disk)
    return stray, missing


def _slow_download(port: int, path: str, raw_key: str, seconds: float, out: dict) -> None:
    """Download, spreading the reads over `seconds`; note how much was still to come at expiry."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    body = bytearray()
    try:
        connection.request("GET", path, headers={"Connection": "close", **client.bearer(raw_key)})
        response = connection.getresponse()
        length = int(response.headers["Content-Length"])
        out["status"] = response.status
        while chunk := response.read(16384):
            body += chunk
            if "left_at_expiry" not in out and time.time() >= out["expiry"]:
                out["left_at_expiry"] = length - len(body)
            time.sleep(max(0.0, len(body) / length * seconds - (time.monotonic() - started)))
        out["complete"] = len(body) == length
    except (OSError, http.client.HTTPException) as exc:
        out["complete"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = time.monotonic() - started
    out["body"] = bytes(body)


def _valid_zip(body: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def check_expiry_race(context: Context) -> Row:
    budget = context.budget
    celery_running(context)
    campaign = context.campaign
    owner, raw_key = owner_create("expiry-race")
    lead = 5.0 if budget.name == "full" else 2.0
    duration = min(budget.deadline - 2, lead + 10)
    per_download, size = 4, 4 << 20
    groups = []
    for _ in range(budget.race_downloads):
        generations = [
            ready_generation(owner, video_bytes(size), external_id=f"race-{n}")
            for n in range(per_download)
        ]
        groups.append(generations)
    pks = [generation.pk for group in groups for generation in group]
    names = [generation.video.name for group in groups for generation in group]
    # the clock: every generation of the row expires `lead` s after the downloads start
    expiry = timezone.now() + timedelta(seconds=lead + 1)
    Generation.objects.filter(pk__in=pks).update(
        expires_at=expiry, created_at=expiry - generations_settings.RETENTION
    )
    expiry_epoch = expiry.timestamp()
    time.sleep(max(0.0, expiry_epoch - lead - time.time()))
    outs = [{"expiry": expiry_epoch} for _ in groups]
    threads = [
        threading.Thread(
            target=_slow_download,
            args=(
                context.web_port,
                f"{client.API}/generations/download?ids={','.join(str(g.pk) for g in group)}",
                raw_key,
                duration,
                out,
            ),
        )
        for group, out in zip(groups, outs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    violations = Violations()
    truncated = not_served = 0
    for index, out in enumerate(outs):
        if out.get("status") != 200:
            # the request reached the view only after expiry: it waited in the server
            not_served += 1
            violations.add(
                f"download {index}: {out.get('status')} after {out['seconds']:.1f} s "
                f"{out.get('error', '')}"
            )
        elif not out.get("complete") or not _valid_zip(out["body"]):
            truncated += 1
            violations.add(f"download {index}: truncated, {out.get('error', '')}")
        out.pop("body", None)
    # then every file must be gone within two sweeps of expiry + grace
    purge_at = expiry_epoch + budget.grace
    videos = campaign.videos
    wait_until(lambda: time.time() >= purge_at - 0.5, budget.grace + 30)
    unfinished = Generation.objects.filter(pk__in=pks).filter(
        ~Q(video="") | ~Q(status=Generation.Status.EXPIRED)
    )

    def purged() -> bool:
        # the sweep deletes the file, then clears the row: both count
        return not any((videos / name).exists() for name in names) and not unfinished.exists()

    gone = wait_until(purged, 2 * SWEEP_INTERVAL + 30, 0.05)
    gone_after = time.time() - purge_at if gone is not None else None
    in_time = gone_after is not None and gone_after <= 2 * SWEEP_INTERVAL
    rows_left = unfinished.count()
    left = [out.get("left_at_expiry", 0) for out in outs if out.get("status") == 200] or [0]
    return Row(
        name="expiry_race",
        check="expiry race",
        scale=f"{len(outs)} downloads (4 × 4 MB) started {lead:g} s before expiry, each "
        f"lasting {duration:g} s; PURGE_GRACE {budget.grace:g} s > DOWNLOAD_DEADLINE "
        f"{budget.deadline:g} s; Celery beat sweep every {SWEEP_INTERVAL:g} s",
        figure=f"{truncated} truncated by the sweep, {not_served} not served (answered "
        f"only after expiry) ({min(left) / (1 << 20):.1f}–"
        f"{max(left) / (1 << 20):.1f} MB of each still to come at expiry); all "
        f"{len(names)} files deleted and rows cleared "
        + (
            f"{gone_after:+.2f} s after expiry + grace (≤ {2 * SWEEP_INTERVAL:g} s)"
            if gone_after is not None
            else "NOT within 30 s of expiry + grace"
        )
        + f"; {rows_left} rows not cleared",
        passed=not violations and in_time and rows_left == 0,
        details={
            "downloads": outs,
            "files_gone_seconds_after_expiry_plus_grace": gone_after,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )


class SweepLoop(threading.Thread):
    """A "beat": `manage.py generations_expire` again and again, a second apart."""

    def __init__(self, context: Context, name: str) -> None:
        super().__init__(daemon=True)
        self.context = context
        self.name = name
        self.halt = threading.Event()
        self.runs = 0
        self.failures = 0

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.context.campaign.manage(
                    "generations_expire", application_name=f"rotate-reliability-{self.name}"
                )
            except RuntimeError:
                self.failures += 1
            self.runs += 1
            self.halt.wait(SWEEP_INTERVAL)


def check_sweep_at_scale(context: Context) -> Row:
    budget = context.budget
    celery_running(context)
    campaign = context.campaign
    owner, _ = owner_create("sweep-scale")
    created_at = timezone.now() - timedelta(hours=3)
    names = due_rows(owner, budget.sweep_rows, created_at=created_at)
    pks = list(Generation.objects.filter(video__in=names).values_list("pk", flat=True))
    deadlocks_before = campaign.database_deadlocks()
    fault_plan_write(campaign.faults, {"delete_failure_rate": 0.1})
    log_offsets = {
        name: campaign.log(name).stat().st_size if campaign.log(name).exists() else 0
        for name in ("manage", "celery")
    }
    started = time.monotonic()
    workers = []
    for n in range(3):
        log = campaign.log(f"sweep-worker-{n}")
        with log.open("ab") as output:
            workers.append(
                popen(
                    [PYTHON, "manage.py", "generations_expire", "--batch-size", "200"],
                    cwd=ROOT,
                    env=campaign.env(f"rotate-reliability-sweep-{n}"),
                    stdout=output,
                    stderr=output,
                )
            )
    beats = [SweepLoop(context, f"beat-{n}") for n in range(2)]
    for beat in beats:
        beat.start()
    sweep_dir = campaign.videos / "sweep"

    def converged() -> bool:
        pending = (
            Generation.objects.filter(pk__in=pks)
            .filter(~Q(video="") | ~Q(status=Generation.Status.EXPIRED))
            .count()
        )
        return pending == 0 and not any(sweep_dir.iterdir())

    limit = 300.0 if budget.name == "full" else 120.0
    converge_seconds = wait_until(converged, limit, 0.5)
    for beat in beats:
        beat.halt.set()
    for beat in beats:
        beat.join()
    exit_codes = [worker.wait(timeout=120) for worker in workers]
    fault_plan_write(campaign.faults, {})
    elapsed = time.monotonic() - started
    deadlocks = campaign.database_deadlocks() - deadlocks_before
    texts = [campaign.log(f"sweep-worker-{n}").read_text(errors="replace") for n in range(3)]
    for name, offset in log_offsets.items():
        with campaign.log(name).open("rb") as file:
            file.seek(offset)
            texts.append(file.read().decode(errors="replace"))
    logged = "\n".join(texts)
    deadlock_lines = logged.lower().count("deadlock")
    failed_deletes = len(set(FAILED_DELETE.findall(logged)))
    stray, missing = orphans(campaign.videos)
    violations = Violations()
    if converge_seconds is None:
        violations.add(f"not converged within {limit:g} s")
    if any(exit_codes):
        violations.add(f"sweep exit codes {exit_codes}")
    if any(beat.failures for beat in beats):
        violations.add(f"beat runs failed: {[beat.failures for beat in beats]}")
    attempts = sum(Generation.objects.filter(pk__in=pks).values_list("purge_attempts", flat=True))
    return Row(
        name="sweep_scale",
        check="sweep at scale (PostgreSQL)",
        scale=f"{len(names):,} due rows; 3 `generations_expire` processes + 2 loops every "
        "second (+ the Celery beat sweep); 10 % of storage deletes fail",
        figure=(
            f"converged in {converge_seconds:.1f} s"
            if converge_seconds is not None
            else f"NOT converged in {limit:g} s"
        )
        + f" ({failed_deletes} injected delete failures retried); {len(stray)} orphan files, "
        f"{len(missing)} rows pointing at missing files; {deadlocks} deadlocks "
        f"(pg_stat_database), {deadlock_lines} in logs",
        passed=not violations
        and not stray
        and not missing
        and deadlocks == 0
        and deadlock_lines == 0,
        details={
            "elapsed_seconds": elapsed,
            "exit_codes": exit_codes,
            "beat_runs": [beat.runs for beat in beats],
            "purge_attempts_left": attempts,
            "orphan_files": stray[:20],
            "rows_missing_files": missing[:20],
            "violations": violations.count,
            "samples": violations.samples,
        },
    )

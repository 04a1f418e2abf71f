"""`make bench`: the zip endpoint against nginx serving the same bytes, in one run.

Alternates A/B runs and reports medians with min–max, as ratios. Writes
bench/results/results.json, results.md and ratios.png. Figures, not assertions: this
machine is shared and noisy, so nothing here belongs in the test suite.
"""

import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from processes import cpu_seconds, peak_rss_mb, process_tree
from s3_reader import curl_all, presigned_urls

ROOT = Path(__file__).resolve().parents[1]
# tests/: moto's S3 server and the port helpers, shared with the tests
sys.path.insert(0, str(ROOT))
from tests.processes import free_port, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORK = RESULTS / "tmp"
PYTHON = sys.executable
# Each 2 GB round takes about half a second, so more rounds cost little and steady the
# medians on a shared machine.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
VIDEOS, VIDEO_MB = 100, 20


class Server:
    """The reference project under gunicorn (or another command) on its own database."""

    def __init__(self, name: str, command: list[str] | None = None) -> None:
        self.dir = WORK / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": f"sqlite:///{self.dir / 'db.sqlite3'}",
            "MEDIA_ROOT": str(self.dir / "media"),
            "PORT": str(self.port),
            "DEBUG": "0",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "8",
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("REDIS_URL", None)
        self.command = command or [
            PYTHON,
            "-m",
            "gunicorn",
            "--config",
            "config/gunicorn.py",
            "config.wsgi",
        ]
        self.process: subprocess.Popen | None = None

    def run(self, *args: str) -> str:
        return subprocess.run(
            [PYTHON, *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def seed(self, count: int, size_mb: int, sparse: bool = False) -> dict:
        self.run("manage.py", "migrate", "--noinput")
        self.run("manage.py", "createcachetable")
        return json.loads(
            self.run("bench/seed.py", str(count), str(size_mb), *(["--sparse"] if sparse else []))
        )

    def start(self) -> "Server":
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "server.log").open("a"),
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def pids(self) -> list[int]:
        assert self.process is not None
        return process_tree(self.process.pid)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def curl(url: str, *headers: str) -> dict[str, float]:
    """One download to /dev/null by curl (C, so the client costs both sides the same)."""
    command = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{time_total} %{time_starttransfer} %{size_download} %{http_code}",
        url,
    ]
    for header in headers:
        command[1:1] = ["-H", header]
    total, first_byte, size, status = subprocess.run(
        command, check=True, capture_output=True, text=True
    ).stdout.split()
    return {
        "seconds": float(total),
        "ttfb": float(first_byte),
        "bytes": int(size),
        "status": int(status),
    }


def costing(
    pids: Callable[[], list[int]],
    size: int,
    cpu_per_gb: list[float],
    run: Callable[[], dict[str, float]],
) -> dict[str, float]:
    """`run()`, appending to `cpu_per_gb` the CPU seconds per GB of `size` bytes that it cost
    the processes `pids()` names."""
    before = cpu_seconds(pids())
    result = run()
    cpu_per_gb.append((cpu_seconds(pids()) - before) / (size / 1e9))
    return result


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def alternate(rounds: int, **runs: Callable[[], float]) -> dict[str, list[float]]:
    """Run each measurement once per round, in turn, so drift hits all of them alike."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return results


def check_archive(archive: Path, url: str, auth: str) -> dict[str, object]:
    """The 100-video archive: identical on a second request, accepted by every zip reader."""
    again = archive.with_suffix(".again")
    subprocess.run(["curl", "-sS", "-o", str(again), "-H", auth, url], check=True)
    identical = filecmp.cmp(archive, again, shallow=False)
    again.unlink()
    readers = {
        "unzip": ["unzip", "-tqq", str(archive)],
        "7z": ["7z", "t", "-bd", str(archive)],
        "bsdtar": ["bsdtar", "-xOf", str(archive)],
        "python zipfile": [PYTHON, "-m", "zipfile", "-t", str(archive)],
    }
    return {
        "byte_identical_on_second_request": identical,
        "readers": {
            name: subprocess.run(command, stdout=subprocess.DEVNULL, check=False).returncode == 0
            for name, command in readers.items()
            if shutil.which(command[0])
        },
    }


def run_nginx(name: str, port: int, http: str) -> subprocess.Popen:
    """nginx in the foreground with one worker, its files named after `name` in WORK, and
    `http` as the body of its http block; returns once it listens on `port`."""
    conf = WORK / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
user root;
pid {WORK}/{name}.pid;
error_log {WORK}/{name}-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
{http}
}}
""")
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(WORK)])
    wait_for_port(port)
    return process


def start_nginx(root: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = run_nginx(
        "nginx",
        port,
        f"""
    # The faster of nginx's two ways on this VM, measured: read/write with 1 MiB buffers
    # ~2.5 GB/s; sendfile (tcp_nopush) ~1.1 GB/s. The anchor should be nginx at its best.
    sendfile off;
    output_buffers 2 1m;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
""",
    )
    return process, port


def start_nginx_relay(endpoint_url: str, urls: list[str]) -> tuple[subprocess.Popen, list[str]]:
    """nginx proxying to the S3 server (buffered, keep-alive), and `urls` through it: the
    same relay work as the app's S3 download (receive every byte, send it on), done in C."""
    port = free_port()
    upstream = endpoint_url.removeprefix("http://")
    process = run_nginx(
        "nginx-relay",
        port,
        f"""
    upstream s3 {{ server {upstream}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://s3;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};  # presigned: the signature covers the host
            proxy_buffers 8 1m;
            proxy_buffer_size 1m;
            proxy_max_temp_file_size 0;
        }}
    }}
""",
    )
    return process, [url.replace(endpoint_url, f"http://127.0.0.1:{port}", 1) for url in urls]


def bench_full_download(results: dict) -> None:
    server = Server("full")
    seeded = server.seed(VIDEOS, VIDEO_MB)
    auth = f"Authorization: Bearer {seeded['raw_key']}"
    ids = ",".join(map(str, seeded["ids"]))
    server.start()
    zip_url = f"{server.base}/api/v1/generations/download?ids={ids}"
    nginx_root = WORK / "nginx-root"
    nginx_root.mkdir(exist_ok=True)
    archive = nginx_root / "archive.zip"
    subprocess.run(["curl", "-sS", "-o", str(archive), "-H", auth, zip_url], check=True)
    size = archive.stat().st_size
    results["archive_checks"] = check_archive(archive, zip_url, auth)
    nginx, nginx_port = start_nginx(nginx_root)
    try:
        cpu_per_gb: list[float] = []

        def app() -> float:
            run = costing(server.pids, size, cpu_per_gb, lambda: curl(zip_url, auth))
            assert (run["bytes"], run["status"]) == (size, 200), run
            return run["seconds"]

        nginx_cpu_per_gb: list[float] = []

        def static() -> float:
            url = f"http://127.0.0.1:{nginx_port}/archive.zip"
            nginx_pids = partial(process_tree, nginx.pid)
            run = costing(nginx_pids, size, nginx_cpu_per_gb, lambda: curl(url))
            assert run["bytes"] == size, run
            return run["seconds"]

        def tail_range() -> float:
            run = curl(zip_url, auth, f"Range: bytes={size - 100 * 2**20}-")
            assert run["status"] == 206, run
            return run["seconds"]

        times = alternate(ROUNDS, app=app, nginx=static, range_last_100mb=tail_range)
        ttfb = alternate(
            ROUNDS * 2,
            zip_100_ids=lambda: curl(zip_url, auth, "Range: bytes=0-0")["ttfb"],
            status=lambda: curl(
                f"{server.base}/api/v1/generations/{seeded['ids'][0]}/status", auth
            )["ttfb"],
        )
        app_median = statistics.median(times["app"])
        results["full_download"] = {
            "archive_bytes": size,
            "gunicorn_seconds": summary(times["app"]),
            "nginx_seconds": summary(times["nginx"]),
            "ratio_gunicorn_to_nginx": app_median / statistics.median(times["nginx"]),
            "gunicorn_gb_per_s": size / 1e9 / app_median,
            "server_cpu_seconds_per_gb": summary(cpu_per_gb),
            "nginx_cpu_seconds_per_gb": summary(nginx_cpu_per_gb),
            "server_peak_rss_mb": peak_rss_mb(server.pids()),
        }
        results["range_last_100mb"] = {
            "seconds": summary(times["range_last_100mb"]),
            "ratio_to_full": statistics.median(times["range_last_100mb"]) / app_median,
        }
        results["time_to_first_byte"] = {
            "zip_100_ids_seconds": summary(ttfb["zip_100_ids"]),
            "status_seconds": summary(ttfb["status"]),
            "ratio": statistics.median(ttfb["zip_100_ids"]) / statistics.median(ttfb["status"]),
        }
        results["queries_per_download"] = json.loads(
            server.run("bench/queries.py", seeded["raw_key"], *map(str, seeded["ids"]))
        )
        results["_nginx"] = {"port": nginx_port, "archive": str(archive), "size": size}
        results["_full_server"] = {"auth": auth, "url": zip_url}
        for name, command in extra_servers().items():
            results[name] = bench_other_server(server, command, zip_url, auth, size, nginx_port)
        with videos_on_s3(server) as (s3_env, object_urls):
            relay, relayed_urls = start_nginx_relay(s3_env["AWS_S3_ENDPOINT_URL"], object_urls)
            try:
                results["s3_full_download"] = bench_other_server(
                    server,
                    server.command,
                    zip_url,
                    auth,
                    size,
                    nginx_port,
                    env=s3_env,
                    anchors={
                        "s3_alone": lambda: curl_all(object_urls),
                        "nginx_relay": lambda: curl_all(relayed_urls),
                    },
                )
            finally:
                relay.terminate()
                relay.wait()
    finally:
        server.stop()
        nginx.terminate()
        nginx.wait()


def extra_servers() -> dict[str, list[str]]:
    """Other servers of the reference project to run the same full download through."""
    servers = {}
    if shutil.which("uvicorn", path=str(Path(PYTHON).parent)):
        servers["asgi_full_download"] = [
            PYTHON,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            "{port}",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    return servers


@contextmanager
def videos_on_s3(seeded_server: Server) -> Iterator[tuple[dict[str, str], list[str]]]:
    """The seeded videos copied to a bucket of moto's S3 server on loopback, under the same
    names; yields the environment that makes the reference project read them from there,
    and the objects' URLs for timing the S3 server alone."""
    from tests.s3_server import CREDENTIALS, REGION, bucket_create, moto_server, s3_admin_client

    location = Path(seeded_server.env["MEDIA_ROOT"]) / "videos"
    with moto_server() as endpoint_url:
        bucket = bucket_create(endpoint_url)
        client = s3_admin_client(endpoint_url)
        keys = [path.relative_to(location).as_posix() for path in sorted(location.rglob("*.mp4"))]
        for key in keys:
            client.upload_file(str(location / key), bucket, key)
        environment = {
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["access_key"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["secret_key"],
            "AWS_DEFAULT_REGION": REGION,
        }
        yield environment, presigned_urls(client, bucket, keys)


def bench_other_server(
    seeded_server: Server,
    command: list[str],
    zip_url: str,
    auth: str,
    size: int,
    nginx_port: int,
    env: dict[str, str] | None = None,
    anchors: dict[str, Callable[[], float]] | None = None,
) -> dict:
    """The seeded archive through another server or storage, alternating with nginx and with
    any further `anchors` (name → seconds of one run)."""
    other = Server("full", command)
    other.env = {**seeded_server.env, **(env or {}), "PORT": str(other.port)}
    other.start()
    url = zip_url.replace(f":{seeded_server.port}/", f":{other.port}/")
    cpu_per_gb: list[float] = []

    def app() -> float:
        return costing(other.pids, size, cpu_per_gb, lambda: curl(url, auth))["seconds"]

    try:
        curl(url, auth)  # warm up, as the gunicorn server was by the download of the archive
        times = alternate(
            ROUNDS,
            app=app,
            nginx=lambda: curl(f"http://127.0.0.1:{nginx_port}/archive.zip")["seconds"],
            **(anchors or {}),
        )
        app_median = statistics.median(times["app"])
        return {
            "seconds": summary(times["app"]),
            "nginx_seconds": summary(times["nginx"]),
            "ratio_to_nginx": app_median / statistics.median(times["nginx"]),
            **{
                f"ratio_to_{name}": app_median / statistics.median(times[name])
                for name in anchors or {}
            },
            **{f"{name}_seconds": summary(times[name]) for name in anchors or {}},
            "server_cpu_seconds_per_gb": summary(cpu_per_gb),
            "server_peak_rss_mb": peak_rss_mb(other.pids()),
        }
    finally:
        other.stop()


def bench_memory_flatness(results: dict) -> None:
    """Peak server RSS for a 200 MB and a 4 GB archive (sparse zero files), fresh servers."""
    server = Server("sparse")
    small = server.seed(10, 20, sparse=True)
    large = server.seed(4, 1024, sparse=True)
    peaks = {}
    for label, seeded in (("200MB", small), ("4GB", large)):
        server.start()
        try:
            ids = ",".join(map(str, seeded["ids"]))
            run = curl(
                f"{server.base}/api/v1/generations/download?ids={ids}",
                f"Authorization: Bearer {seeded['raw_key']}",
            )
            assert run["status"] == 200, run
            peaks[label] = {"bytes": run["bytes"], "peak_rss_mb": peak_rss_mb(server.pids())}
        finally:
            server.stop()
    results["memory_flatness"] = {
        **peaks,
        "growth_mb": peaks["4GB"]["peak_rss_mb"] - peaks["200MB"]["peak_rss_mb"],
    }


def run_script(results: dict, name: str, script: str) -> None:
    path = ROOT / "bench" / script
    if path.exists():
        completed = subprocess.run([PYTHON, str(path)], cwd=ROOT, capture_output=True, text=True)
        if completed.returncode == 0:
            results[name] = json.loads(completed.stdout)
        else:
            results[name] = {"error": completed.stderr[-2000:]}


def write_reports(results: dict) -> None:
    public = {key: value for key, value in results.items() if not key.startswith("_")}
    (RESULTS / "results.json").write_text(json.dumps(public, indent=2) + "\n")
    rows = ratio_rows(public)
    lines = [
        "# Benchmark results",
        "",
        f"`make bench`, {ROUNDS} alternating rounds, medians (min–max). Machine: "
        f"{os.cpu_count()} cores; loopback; curl as the client.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        *[f"| {name} | {value} | {target} |" for name, value, target, _ in rows],
        "",
    ]
    (RESULTS / "results.md").write_text("\n".join(lines))
    chart(rows)


def spread(seconds: dict[str, float]) -> str:
    """A summary() of seconds as `median s (min–max)`."""
    return f"{seconds['median']:.3f} s ({seconds['min']:.3f}–{seconds['max']:.3f})"


def ratio_rows(results: dict) -> list[tuple[str, str, str, float | None]]:
    rows: list[tuple[str, str, str, float | None]] = []
    full = results.get("full_download")
    if full:
        rows += [
            (
                "gunicorn ÷ nginx, full 2 GB download",
                f"{full['ratio_gunicorn_to_nginx']:.3f}: "
                f"gunicorn {spread(full['gunicorn_seconds'])}, "
                f"nginx {spread(full['nginx_seconds'])}",
                "≤ 1.05",
                full["ratio_gunicorn_to_nginx"],
            ),
            ("gunicorn throughput", f"{full['gunicorn_gb_per_s']:.2f} GB/s", "", None),
            (
                "server CPU per GB",
                f"{spread(full['server_cpu_seconds_per_gb'])}; nginx "
                f"{spread(full['nginx_cpu_seconds_per_gb'])}",
                "≤ 0.25 s",
                None,
            ),
            ("server peak RSS (full download)", f"{full['server_peak_rss_mb']:.0f} MB", "", None),
        ]
    checks = results.get("archive_checks")
    if checks:
        readers = ", ".join(
            f"{name} {'ok' if ok else 'FAILED'}" for name, ok in checks["readers"].items()
        )
        identical = "identical" if checks["byte_identical_on_second_request"] else "DIFFERENT"
        rows.append(
            ("100-video archive: 2nd request; readers", f"{identical}; {readers}", "", None)
        )
    if "range_last_100mb" in results:
        tail = results["range_last_100mb"]
        rows.append(
            (
                "last 100 MB ÷ full download",
                f"{tail['ratio_to_full']:.3f}: {spread(tail['seconds'])}",
                "≤ 0.10",
                tail["ratio_to_full"],
            )
        )
    if "time_to_first_byte" in results:
        ratio = results["time_to_first_byte"]["ratio"]
        rows.append(("TTFB 100 IDs ÷ status request", f"{ratio:.2f}", "", ratio))
    if "queries_per_download" in results:
        counts = results["queries_per_download"]
        download = "/".join(str(counts[k]["download"]) for k in ("1", "10", "100"))
        cache = "/".join(str(counts[k]["cache"]) for k in ("1", "10", "100"))
        rows.append(
            (
                "DB queries per download (1/10/100 IDs)",
                f"{download} (+ {cache} on `make run`'s database cache, its table and "
                "transactions: throttles, download slot; Redis in production)",
                "≤ 3, constant",
                None,
            )
        )
    if "memory_flatness" in results:
        flat = results["memory_flatness"]
        rows.append(
            ("peak RSS 4 GB − 200 MB archive", f"{flat['growth_mb']:.1f} MB", "≤ 32 MB", None)
        )
    if "asgi_full_download" in results:
        asgi = results["asgi_full_download"]
        rows.append(
            (
                "uvicorn (ASGI) ÷ nginx, full download",
                f"{asgi['ratio_to_nginx']:.3f}: uvicorn {spread(asgi['seconds'])}"
                f", nginx {spread(asgi['nginx_seconds'])}",
                "≤ 1.15",
                asgi["ratio_to_nginx"],
            )
        )
    if "s3_full_download" in results:
        s3 = results["s3_full_download"]
        rows += [
            (
                "gunicorn on S3 (moto) ÷ nginx, full download",
                f"{s3['ratio_to_nginx']:.3f}: gunicorn {spread(s3['seconds'])}"
                f", nginx {spread(s3['nginx_seconds'])}",
                "",
                s3["ratio_to_nginx"],
            ),
            (
                "gunicorn on S3 ÷ the same objects from moto by curl",
                f"{s3['ratio_to_s3_alone']:.3f}: curl {spread(s3['s3_alone_seconds'])}; "
                f"server CPU per GB {spread(s3['server_cpu_seconds_per_gb'])}",
                "≤ 1.15",
                s3["ratio_to_s3_alone"],
            ),
            (
                "gunicorn on S3 ÷ nginx relaying the same objects from moto to curl",
                f"{s3['ratio_to_nginx_relay']:.3f}: nginx relay "
                f"{spread(s3['nginx_relay_seconds'])}",
                "",
                s3["ratio_to_nginx_relay"],
            ),
        ]
    reader = results.get("s3_reader")
    if reader and "ratio" in reader:
        seconds, cpu = reader["median_seconds"], reader["median_cpu_seconds"]
        rows.append(
            (
                "S3 read alone (archive in-process, no HTTP server) ÷ curl, 100 × 20 MB",
                f"{reader['ratio']:.3f}: reader {seconds['reader']:.3f} s "
                f"(CPU {cpu['reader']:.2f} s), curl {seconds['curl']:.3f} s "
                f"(CPU {cpu['curl']:.2f} s)",
                "",
                reader["ratio"],
            )
        )
    relay = results.get("s3_lean_relay")
    if relay and "curl" in relay:
        for mode, how in (("copy", "recv_into + sendall"), ("splice", "os.splice")):
            run, cpu = relay[mode], relay[mode]["median_cpu_seconds"]
            rows.append(
                (
                    f"lean relay of the S3 objects ({how}, next object requested ahead) ÷ curl",
                    f"{run['ratio_to_curl']:.3f}: {run['median_seconds']:.3f} s; CPU s: moto "
                    f"{cpu['moto']:.2f}, relay {cpu['relay']:.2f}, curl {cpu['curl']:.2f}",
                    "",
                    run["ratio_to_curl"],
                )
            )
    for name, key, target in (("s3_latency", "ratio", "≤ 1.2"),):
        if name in results and key in results[name]:
            ratio = results[name][key]
            rows.append(("S3, 20 ms latency ÷ none (100 objects)", f"{ratio:.3f}", target, ratio))
    for name, key in (("asgi_slow_clients", "server_vmhwm_mib"),):
        if name in results and key in results[name]:
            rows.append(
                ("ASGI RSS, 200 slow clients", f"{results[name][key]:.0f} MB", "≤ 300 MB", None)
            )
    create = results.get("bulk_create")
    if create and "data_url_seconds" in create:
        queries = create["queries"]
        rows += [
            (
                "E6, 600 data-URL images ÷ Pillow alone (decode + PNG, one thread)",
                f"{create['data_url_ratio_to_pillow']:.2f}: "
                f"E6 {spread(create['data_url_seconds'])}, "
                f"Pillow {spread(create['pillow_alone_seconds'])}",
                "",
                create["data_url_ratio_to_pillow"],
            ),
            (
                "E6, 600 URLs at 100 ms ÷ 600 × 100 ms ÷ concurrency",
                f"{create['url_ratio_to_anchor']:.2f}: E6 {spread(create['url_seconds'])}, "
                f"anchor {create['url_anchor_seconds']:.2f} s "
                f"(concurrency {create['intake_concurrency']})",
                "",
                create["url_ratio_to_anchor"],
            ),
            ("E6 server peak RSS", f"{create['server_peak_rss_mb']:.0f} MB", "", None),
            (
                "DB queries per E6 request (1/600 items)",
                f"{queries['1']}/{queries['600']} (SQLite: Django caps an INSERT at 999 "
                "parameters, so 600 rows take several; one on PostgreSQL)",
                "constant but for that",
                None,
            ),
        ]
    render = results.get("render_latency")
    if render and "sqlite_broker" in render:
        for broker in ("sqlite_broker", "redis_broker"):
            if broker in render:
                measured = render[broker]
                rows.append(
                    (
                        f"create → succeeded, no-op renderer, {broker.replace('_', ' ')} "
                        "(p50 ÷ the create request)",
                        f"{measured['ratio_p50_to_create']:.1f}: p50 "
                        f"{measured['p50_seconds'] * 1000:.0f} ms, p95 "
                        f"{measured['p95_seconds'] * 1000:.0f} ms, create "
                        f"{measured['create_p50_seconds'] * 1000:.0f} ms",
                        "",
                        None,
                    )
                )
        turntable = render["turntable"]
        rows.append(
            (
                f"turntable {turntable['width']}×{turntable['height']}, "
                f"{turntable['frames']} frames",
                f"{turntable['fps_median']:.1f} fps wall, "
                f"{turntable['fps_per_cpu_second']:.1f} per CPU-second",
                "",
                None,
            )
        )
    return rows


def chart(rows: list[tuple[str, str, str, float | None]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ratios = [(name, value) for name, _, _, value in rows if value is not None]
    figure, axis = plt.subplots(figsize=(9, 0.6 * len(ratios) + 1.2))
    axis.barh([name for name, _ in ratios], [value for _, value in ratios], color="#4c78a8")
    axis.axvline(1.0, color="grey", linewidth=0.8)
    axis.set_xlabel("ratio (lower is better)")
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(RESULTS / "ratios.png", dpi=100)


def main() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    results: dict = {"rounds": ROUNDS}
    started = time.monotonic()
    try:
        bench_full_download(results)
        bench_memory_flatness(results)
        run_script(results, "s3_latency", "s3_latency.py")
        run_script(results, "s3_reader", "s3_reader.py")
        run_script(results, "s3_lean_relay", "s3_lean_relay.py")
        run_script(results, "asgi_slow_clients", "asgi_slow_clients.py")
        run_script(results, "bulk_create", "bulk_create.py")
        run_script(results, "render_latency", "render_latency.py")
    finally:
        results["bench_seconds"] = round(time.monotonic() - started, 1)
        write_reports(results)
    shutil.rmtree(WORK, ignore_errors=True)  # kept after a failure: the server logs are there
    print((RESULTS / "results.md").read_text())


if __name__ == "__main__":
    main()

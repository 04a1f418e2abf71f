"""Run the campaign: start the services, run each row, write results.json and results.md.

`python -m reliability` (= `make reliability`) runs the full scale, `--budget ci` the small
one that CI runs. A failing row (or one whose check crashed) makes the exit status 1.
"""

import argparse
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from reliability import client
from reliability.checks import CI, FULL, Context, Row
from reliability.environment import Campaign

RESULTS = Path(__file__).resolve().parent


def django_setup(campaign: Campaign) -> None:
    """The runner itself seeds and inspects the campaign database through the apps."""
    os.environ.update(campaign.env("rotate-reliability-runner"))
    import django

    django.setup()


ROWS = [
    ("tenancy", "tenancy", "check_cross_tenant"),
    ("auth_fuzz", "fuzz", "check_authorization_fuzz"),
    ("input_fuzz", "fuzz", "check_input_fuzz"),
    ("faults", "streams", "check_mid_stream_faults"),
    ("disconnects", "streams", "check_client_disconnects"),
    ("concurrent", "load", "check_concurrent_downloads"),
    ("slow_readers", "load", "check_slow_readers"),
    ("expiry_race", "expiry", "check_expiry_race"),
    ("sweep_scale", "expiry", "check_sweep_at_scale"),
    ("redis_outage", "outage", "check_redis_outage"),
    ("zip64", "zip64", "check_zip64_readers"),
    ("connections", "connections", "check_idle_and_slow_connections"),
    ("auth_throttle", "auth_throttle", "check_failed_auth_throttle"),
    ("download_cap", "download_cap", "check_download_cap"),
    ("webhook_down", "webhooks", "check_receiver_down"),
    ("webhook_flapping", "webhooks", "check_receiver_flapping"),
    ("webhook_burst", "webhooks", "check_delivery_burst"),
    ("credit_contention", "credits", "check_credit_contention"),
    ("idempotent_retries", "credits", "check_idempotent_retries"),
    ("workers_killed", "renders", "check_workers_killed"),
    ("cancel_expiry_races", "renders", "check_cancel_expiry_races"),
    ("postgres_restart", "postgres_restart", "check_postgres_restart"),
    ("hostile_images", "hostile_images", "check_hostile_images"),
    ("ssrf", "ssrf", "check_ssrf"),
    ("two_nodes", "two_nodes", "check_two_nodes"),
    ("key_secrecy", "secrecy", "check_key_secrecy"),
]


def check_function(module: str, function: str) -> Callable[[Context], Row]:
    return getattr(importlib.import_module(f"reliability.checks.{module}"), function)


def crashed(name: str, exc: BaseException) -> Row:
    return Row(
        name=name,
        check=name,
        scale="",
        figure=f"check crashed: {type(exc).__name__}: {exc}"[:300],
        passed=False,
        details={"traceback": traceback.format_exc()[-4000:]},
    )


def write_results(rows: list[Row], budget: str, seconds: float, suffix: str) -> None:
    payload = {
        "budget": budget,
        "seconds": round(seconds, 1),
        "passed": all(row.passed for row in rows),
        "rows": [
            {
                "name": row.name,
                "check": row.check,
                "scale": row.scale,
                "figure": row.figure,
                "pass": row.passed,
                "seconds": round(row.seconds, 1),
                "details": row.details,
            }
            for row in rows
        ],
    }
    (RESULTS / f"results{suffix}.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n"
    )
    lines = [
        "# Reliability campaign",
        "",
        f"`python -m reliability --budget {budget}`: {len(rows)} rows, "
        f"{sum(row.passed for row in rows)} passed, {seconds / 60:.1f} min. "
        "gunicorn (gthread, 2 workers × 16 threads) with `reliability/settings.py`, nginx with "
        "`docker/nginx.conf` where stated, PostgreSQL, a private Redis; all on loopback. "
        "Details per row in `results.json`.",
        "",
        "| check | scale | figure | pass |",
        "|---|---|---|---|",
        *[
            f"| {row.check} | {row.scale} | {row.figure.replace('|', '/')} | "
            f"{'✅' if row.passed else '❌ FAIL'} |"
            for row in rows
        ],
        "",
    ]
    (RESULTS / f"results{suffix}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--budget", choices=["full", "ci"], default="full")
    parser.add_argument("--only", nargs="*", help="run only these rows (by name)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    budget = FULL if args.budget == "full" else CI
    # The CI budget writes beside the full results, so CI never overwrites the summary.
    suffix = "" if budget is FULL and not args.only else f"-{budget.name}"
    campaign = Campaign(budget=budget.name, deadline=budget.deadline, grace=budget.grace)
    print(f"reliability ({budget.name}): work directory {campaign.work}", flush=True)
    started = time.monotonic()
    rows: list[Row] = []
    selected = [row for row in ROWS if not args.only or row[0] in args.only]
    try:
        campaign.database_create()
        campaign.redis_start()
        django_setup(campaign)
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        client.recorder = client.Recorder(campaign.log("responses"))
        web = campaign.gunicorn_start()
        for _ in range(8):  # let both workers load the whole app before anything is timed
            client.request(web.port or 0, "GET", f"{client.API}/generations")
        nginx = campaign.nginx_start(web.port or 0)
        context = Context(budget=budget, campaign=campaign, web=web, nginx=nginx)
        for name, module, function in selected:
            print(f"--- {name}", flush=True)
            row_started = time.monotonic()
            try:
                row = check_function(module, function)(context)
            except Exception as exc:  # a crashed check is a failed row, never a silent one
                row = crashed(name, exc)
            row.seconds = time.monotonic() - row_started
            rows.append(row)
            mark = "pass" if row.passed else "FAIL"
            print(f"{mark}: {row.check} [{row.scale}] → {row.figure} ({row.seconds:.0f} s)")
            sys.stdout.flush()
    finally:
        campaign.stop_all()
        seconds = time.monotonic() - started
        write_results(rows, budget.name, seconds, suffix)
    passed = bool(rows) and all(row.passed for row in rows)
    print(
        f"reliability ({budget.name}): {sum(r.passed for r in rows)}/{len(rows)} rows passed "
        f"in {seconds:.0f} s; summary in reliability/results{suffix}.md"
    )
    if passed and not args.keep:
        campaign.database_drop()
        shutil.rmtree(campaign.work, ignore_errors=True)
    else:
        print(f"logs kept in {campaign.work}, the database as {campaign.database}")
    sys.exit(0 if passed else 1)

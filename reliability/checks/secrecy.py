"""Row 12: every raw key the campaign created (its canaries) is looked for in everything the
campaign left behind: server, nginx, Celery and sweep logs, every error body and cookie the
clients received, and a pg_dump of the database. Run last, after the services stopped.
"""

import re
from pathlib import Path

from reliability import client
from reliability.checks import Context, Row
from reliability.environment import POSTGRES_URL, executable, run
from reliability.seed import RAW_KEYS
from rotate import keys as key_format

_SECRET_START = len(key_format.NAMESPACE) + 1 + key_format.PREFIX_LENGTH + 1


def _hits(pattern: re.Pattern[bytes], path: Path) -> int:
    with path.open("rb") as file:
        return sum(len(pattern.findall(line)) for line in file)


def check_key_secrecy(context: Context) -> Row:
    campaign = context.campaign
    campaign.stop_all()  # every log complete and closed
    dump = campaign.work / "dump.sql"
    completed = run(
        [
            executable("pg_dump"),
            "--data-only",
            "--file",
            str(dump),
            f"{POSTGRES_URL}/{campaign.database}",
        ],
        capture_output=True,
    )
    if completed.returncode:
        raise RuntimeError(f"pg_dump failed: {completed.stderr[-500:]!r}")
    # the whole raw key, and its secret part alone (a log that cut the prefix off)
    secrets_ = sorted({key[_SECRET_START:] for key in RAW_KEYS})
    pattern = re.compile(b"|".join(re.escape(secret.encode()) for secret in secrets_))
    prefixes = re.compile(
        b"|".join(re.escape(key_format.key_prefix(key).encode()) for key in RAW_KEYS)  # type: ignore[union-attr]
    )
    logs = sorted(path for path in (campaign.work / "logs").iterdir() if path.is_file())
    responses = campaign.log("responses")
    by_source: dict[str, int] = {}
    for path in [*logs, dump]:
        by_source[path.name] = _hits(pattern, path)
    leaks = sum(by_source.values())
    log_bytes = sum(path.stat().st_size for path in logs)
    recorder = client.recorder
    errors = recorder.errors if recorder else 0
    cookies = recorder.cookies if recorder else 0
    # sanity: the places searched do hold the keys' public prefixes, so the search can find
    dump_prefixes = _hits(prefixes, dump)
    log_prefixes = sum(_hits(prefixes, path) for path in logs)
    passed = leaks == 0 and bool(RAW_KEYS) and dump_prefixes >= len(RAW_KEYS) and errors > 0
    return Row(
        name="key_secrecy",
        check="key secrecy",
        scale=f"{len(RAW_KEYS)} canary keys used by the whole campaign; "
        f"{len(logs)} log files ({log_bytes / 1e6:.0f} MB), {errors} error bodies, "
        f"{cookies} Set-Cookie headers, pg_dump ({dump.stat().st_size / 1e6:.1f} MB)",
        figure=f"{leaks} occurrences of a raw key or its secret (the key prefixes, for "
        f"contrast: {dump_prefixes} in the dump, {log_prefixes} in the logs)",
        passed=passed,
        details={
            "hits_by_source": {name: hits for name, hits in by_source.items() if hits},
            "searched": [path.name for path in [*logs, dump]],
            "responses_log": responses.name,
        },
    )

"""Row "failed-auth throttling": 30 failed authentications a minute per client address.

The campaign's own gunicorn runs with the limit lifted (the fuzz rows send thousands of bad
keys from one address), so this row starts a second one with the reference defaults
(`30/min`) on the same database and Redis, and puts `docker/nginx.conf`'s nginx in front
of it with loopback as the trusted proxy. Clients talk from distinct loopback addresses
(127.0.0.2, 127.0.0.3, …), so the address nginx saw is what tells them apart.
"""

import http.client
import time

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.seed import key_create, owner_create
from rotate.keys import key_generate

LIMIT = 30
ATTACKER, BYSTANDER, FORGER = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def _from(address: str, port: int, headers: dict[str, str]) -> client.Reply:
    """E5 from `address` (a loopback source address) to 127.0.0.1:`port`."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(address, 0)
    )
    path = f"{client.API}/generations"
    try:
        connection.request("GET", path, headers={"Connection": "close", **headers})
        reply = client._reply(connection.getresponse())
    except (http.client.HTTPException, OSError) as exc:
        reply = client.Reply(0, {}, b"", False, type(exc).__name__)
    finally:
        connection.close()
    if client.recorder is not None:
        client.recorder.record(reply, f"GET {path} from {address}")
    return reply


def _retry_after(reply: client.Reply) -> int | None:
    value = reply.headers.get("retry-after", "")
    return int(value) if value.isdigit() else None


def check_failed_auth_throttle(context: Context) -> Row:
    campaign = context.campaign
    web = campaign.gunicorn_start(
        "web-auth-throttle",
        application_name="rotate-reliability-auth-throttle",
        ROTATE_FAILED_AUTH_RATE=f"{LIMIT}/min",
        ROTATE_TRUSTED_PROXIES="127.0.0.1",
    )
    nginx = campaign.nginx_start(web.port or 0, name="nginx-auth-throttle")
    port = nginx.port or 0
    owner, raw_key = owner_create("auth-throttle")
    good_key = key_create(owner, name="bystander")
    violations = Violations()

    def bad() -> dict[str, str]:
        return client.bearer(key_generate().raw_key)

    # 30 bad keys from one address: each an ordinary 401
    first = [_from(ATTACKER, port, bad()).status for _ in range(LIMIT)]
    if first != [401] * LIMIT:
        violations.add(f"first {LIMIT} bad keys: {first}")
    # the 31st: 429 + 4005 + Retry-After
    blocked = _from(ATTACKER, port, bad())
    envelope = blocked.json() if blocked.is_envelope else None
    code = envelope["error"]["code"] if isinstance(envelope, dict) else None
    retry_after = _retry_after(blocked)
    if blocked.status != 429 or code != 4005 or not retry_after or retry_after > 60:
        violations.add(f"31st: {blocked.status} code={code} Retry-After={retry_after}")
    # while blocked, even a valid key from that address is refused (no oracle)
    blocked_valid = _from(ATTACKER, port, client.bearer(raw_key))
    if blocked_valid.status != 429:
        violations.add(f"valid key from the blocked address: {blocked_valid.status}")
    # a forged X-Forwarded-For does not make the attacker someone else
    forged = _from(ATTACKER, port, {**bad(), "X-Forwarded-For": FORGER})
    if forged.status != 429:
        violations.add(f"forged X-Forwarded-For: {forged.status}")
    # another address, through the same nginx: served
    bystander = _from(BYSTANDER, port, client.bearer(good_key))
    if bystander.status != 200:
        violations.add(f"valid key from another address: {bystander.status}")
    # once Retry-After has passed, the attacker's address is served again
    time.sleep((retry_after or 60) + 1)
    released = _from(ATTACKER, port, client.bearer(raw_key))
    if released.status != 200:
        violations.add(f"after Retry-After: {released.status}")
    campaign.services.pop("nginx-auth-throttle").stop()
    campaign.services.pop("web-auth-throttle").stop()
    return Row(
        name="auth_throttle",
        check="failed-auth throttling",
        scale=f"{LIMIT} bad keys/min per address, gunicorn ×2 behind nginx",
        figure=(
            f"31st → {blocked.status} (Retry-After {retry_after}), "
            f"valid key same address → {blocked_valid.status}, "
            f"other address → {bystander.status}, after wait → {released.status}; "
            f"{violations.count} violations"
        ),
        passed=not violations,
        details={"violations": violations.samples},
    )

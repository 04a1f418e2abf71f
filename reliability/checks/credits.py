"""Rows "credits under contention" and "idempotent retries": concurrent E6 requests on
PostgreSQL never spend the same credits twice, never charge a refused request, and a
retried request is charged once and answered byte for byte.

Both rows post small data-URL images, so intake costs no network; the renders they queue
wait in the campaign's Redis (its worker is stopped: a render that failed would refund).
"""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.seed import bulk_create_body, owner_create

ITEMS = 2  # generations per request
COST = 5  # GENERATIONS["CREDITS_PER_GENERATION"] by default
RETRY_PAUSE = 0.2  # a client's pause after 409 (the server says Retry-After: 1)
MAX_CONFLICTS = 300  # a key still running after a minute is a failure, not a hang


def _ledger(owner: object) -> tuple[int, int, int]:
    """(balance, number of charge entries, credits charged) from the database."""
    from rotate.models import CreditAccount, CreditEntry

    account = CreditAccount.objects.get(owner=owner)
    charges = CreditEntry.objects.filter(account=account, kind=CreditEntry.Kind.CHARGE)
    return account.balance, charges.count(), -sum(entry.amount for entry in charges)


def _created(owner: object) -> int:
    from generations.models import Generation

    return Generation.objects.filter(owner=owner).count()


def _reconciles(context: Context) -> bool:
    try:
        context.campaign.manage("rotate_reconcile_credits")
    except RuntimeError:
        return False
    return True


def check_credit_contention(context: Context) -> Row:
    from rotate.services import credit_grant

    context.celery_stop()
    owners, per_owner = 5, 10
    affordable = per_owner // 2  # each balance covers exactly half of its owner's requests
    port, violations = context.web_port, Violations()
    accounts = []
    for n in range(owners):
        owner, raw_key = owner_create(f"credits-contention-{n}")
        credit_grant(owner=owner, amount=affordable * ITEMS * COST, note="reliability")
        accounts.append((owner, raw_key))
    jobs = [
        (owner, raw_key, f"c{n}-{i}")
        for n, (owner, raw_key) in enumerate(accounts)
        for i in range(per_owner)
    ]

    # when 50 requests of 5 owners arrive at once
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        replies = list(
            pool.map(
                lambda job: (
                    job[0],
                    client.generations_post(port, job[1], bulk_create_body(job[2], ITEMS)),
                ),
                jobs,
            )
        )

    # then each is charged and created whole, or refused with 402 and nothing spent
    outcomes: Counter[str] = Counter()
    accepted: Counter[int] = Counter()
    for owner, reply in replies:
        if reply.status == 200:
            data = reply.json()["data"]  # type: ignore[index]
            created, charged = len(data["generations"]), data["credits"]["charged"]
            outcomes["200"] += 1
            accepted[owner.pk] += 1
            if created != ITEMS or charged != ITEMS * COST:
                violations.add(f"200 with {created} created, {charged} charged")
        elif reply.status == 402 and client.error_code(reply) == 4003:
            outcomes["402"] += 1
        else:
            outcomes[str(reply.status)] += 1
            violations.add(f"unexpected {reply.status}: {reply.body[:200]!r}")
    negative = charged_and_refused = 0
    total_charged = total_created = 0
    for owner, _ in accounts:
        balance, charges, charged = _ledger(owner)
        created = _created(owner)
        total_charged, total_created = total_charged + charged, total_created + created
        negative += balance < 0
        # a refused request that still charged shows as more charge entries than 200s
        charged_and_refused += max(0, charges - accepted[owner.pk])
        if accepted[owner.pk] != affordable or balance != 0:
            violations.add(
                f"owner {owner.pk}: {accepted[owner.pk]} accepted (expected {affordable}), "
                f"balance {balance}"
            )
        if charged != COST * created:
            violations.add(f"owner {owner.pk}: charged {charged} for {created} generations")
    reconciled = _reconciles(context)
    passed = (
        not violations
        and negative == 0
        and charged_and_refused == 0
        and reconciled
        and total_charged == COST * total_created
    )
    return Row(
        name="credit_contention",
        check="credits under contention (PostgreSQL)",
        scale=f"{len(jobs)} concurrent E6 requests of {ITEMS} items from {owners} owners whose "
        f"balances cover {affordable} requests each",
        figure=f"outcomes {dict(outcomes)}; {negative} negative balances, "
        f"{charged_and_refused} requests both charged and refused; every account reconciles: "
        f"{'yes' if reconciled else 'NO'}; charged {total_charged} = {COST} × "
        f"{total_created} created: {'yes' if total_charged == COST * total_created else 'NO'}",
        passed=passed,
        details={"violations": violations.samples},
    )


def _until_answered(port: int, raw_key: str, body: bytes, key: str) -> tuple[client.Reply, int]:
    """POST until the answer is not 409 (the first request still running); the final reply
    and the number of 409s seen on the way."""
    conflicts = 0
    while True:
        reply = client.generations_post(port, raw_key, body, key)
        if reply.status != 409 or client.error_code(reply) != 4012 or conflicts == MAX_CONFLICTS:
            return reply, conflicts
        conflicts += 1
        time.sleep(RETRY_PAUSE)


def check_idempotent_retries(context: Context) -> Row:
    from rotate.services import credit_grant

    context.celery_stop()
    keys, retries = 10, 20
    port, violations = context.web_port, Violations()
    owner, raw_key = owner_create("credits-idempotency")
    credit_grant(owner=owner, amount=keys * ITEMS * COST * 10, note="reliability")
    start_balance, start_charges, _ = _ledger(owner)
    jobs = [
        (f"retry-key-{k}", bulk_create_body(f"idem{k}", ITEMS))
        for k in range(keys)
        for _ in range(retries)
    ]

    # when every key is sent 20 times at once
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(
            pool.map(lambda job: (job[0], *_until_answered(port, raw_key, job[1], job[0])), jobs)
        )

    # then one answer per key is the original, the rest replay it byte for byte
    by_key: dict[str, list[client.Reply]] = {}
    conflicts = 0
    for key, reply, seen in answers:
        by_key.setdefault(key, []).append(reply)
        conflicts += seen
    for key, replies in by_key.items():
        statuses = Counter(reply.status for reply in replies)
        originals = [r for r in replies if r.headers.get("idempotency-replayed") != "true"]
        if statuses != Counter({200: retries}) or len(originals) != 1:
            violations.add(f"{key}: statuses {dict(statuses)}, {len(originals)} originals")
            continue
        if any(reply.body != originals[0].body for reply in replies):
            violations.add(f"{key}: a replay differs from the first response")
    balance, charges, _ = _ledger(owner)
    created = _created(owner)
    charged_once = charges - start_charges == keys and created == keys * ITEMS
    spent_once = start_balance - balance == keys * ITEMS * COST
    passed = not violations and charged_once and spent_once and _reconciles(context)
    return Row(
        name="idempotent_retries",
        check="idempotent retries under contention (PostgreSQL)",
        scale=f"{retries} concurrent requests per Idempotency-Key × {keys} keys "
        f"(409 → retry after {RETRY_PAUSE} s)",
        figure=f"{charges - start_charges} charges for {keys} keys, {created} generations "
        f"created (expected {keys * ITEMS}), {start_balance - balance} credits spent "
        f"(expected {keys * ITEMS * COST}); {violations.count} keys with a replay not "
        f"byte-identical or a second original; {conflicts} × 409 while the first ran",
        passed=passed,
        details={"violations": violations.samples},
    )

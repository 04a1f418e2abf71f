"""`python -m config.demo`: create demo data and print ready-to-paste curl commands.

Creates a fresh key and fresh generations on every run (videos expire after an hour), and
tops the demo user's credits up to DEMO_CREDITS, so the printed bulk create works.
"""

import os
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from generations.conf import generations_settings  # noqa: E402
from generations.models import Generation  # noqa: E402
from generations.services import generation_attach_video, generation_create  # noqa: E402
from rotate.selectors import credit_balance  # noqa: E402
from rotate.services import api_key_create, credit_grant  # noqa: E402

VIDEOS = Path(__file__).resolve().parent
# The bulk create body: the product photos beside this file, as data URLs.
CREATE_BODY = VIDEOS / "generations.json"
DEMO_CREDITS = 1000


def main() -> None:
    owner, _ = get_user_model().objects.get_or_create(username="demo")
    api_key, raw_key = api_key_create(owner=owner, name="make run demo")
    if (balance := credit_balance(owner=owner)) < DEMO_CREDITS:
        credit_grant(owner=owner, amount=DEMO_CREDITS - balance, note="make run demo top-up")
    ids = []
    for external_id, color in [("mug-2", "red"), ("mug-2", "blue"), ("chair", "green")]:
        generation = generation_create(owner=owner, external_id=external_id, api_key=api_key)
        with (VIDEOS / f"rotation-{color}.mp4").open("rb") as file:
            generation_attach_video(generation=generation, file=file)
        ids.append(generation.pk)
    rotating = generation_create(
        owner=owner, external_id="lamp", status=Generation.Status.ROTATING, api_key=api_key
    )
    ids.append(rotating.pk)
    base = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/api/v1"
    auth = f'-H "Authorization: Bearer {raw_key}"'
    print(
        "\nDemo data: user 'demo', generations "
        f"{', '.join(map(str, ids))} (the last, 'lamp', is a fixture that stays\n"
        "rotating, to show X-Skipped-Not-Ready). Each run makes a fresh key and fresh\n"
        "generations: videos expire after an hour.\n\n"
        "Download the zip:\n"
        f"  curl -sS -D - {auth} -H 'Content-Type: application/json' "
        f"-d '{{\"videoIds\": [{', '.join(map(str, ids))}]}}' "
        f"{base}/generations/download -o generations.zip\n\n"
        "Status of one generation:\n"
        f"  curl -sS {auth} {base}/generations/{ids[0]}/status\n\n"
        f"Create generations from the product photos in {VIDEOS.relative_to(VIDEOS.parents[1])}/ "
        f"(the demo user has {DEMO_CREDITS} credits, "
        f"{generations_settings.CREDITS_PER_GENERATION} per generation):\n"
        f"  curl -sS {auth} -H 'Content-Type: application/json' "
        f'-H "Idempotency-Key: demo-$(date +%s)" -d @{CREATE_BODY} {base}/generations\n\n'
        "Then poll them (newest first; each renders in a few seconds), see your credits, and "
        "download them once succeeded:\n"
        f"  curl -sS {auth} '{base}/generations?page=1&pageSize=3'\n"
        f"  curl -sS {auth} {base}/credits\n"
        f"  curl -sS -D - {auth} '{base}/generations/download?ids=<id>,<id>' -o created.zip\n\n"
        "Cancel one you just created, right away, before it renders (its credits come back):\n"
        f"  curl -sS -X POST {auth} {base}/generations/<id>/cancel\n\n"
        f"API docs: {base.removesuffix('/api/v1')}/api/docs/  "
        f"admin: {base.removesuffix('/api/v1')}/admin/\n"
    )


main()

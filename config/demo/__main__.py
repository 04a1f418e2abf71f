"""`python -m config.demo`: create demo data and print ready-to-paste curl commands.

Creates a fresh key and fresh generations on every run: videos expire after an hour.
"""

import os
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from generations.models import Generation  # noqa: E402
from generations.services import generation_attach_video, generation_create  # noqa: E402
from rotate.services import api_key_create  # noqa: E402

VIDEOS = Path(__file__).resolve().parent


def main() -> None:
    owner, _ = get_user_model().objects.get_or_create(username="demo")
    api_key, raw_key = api_key_create(owner=owner, name="make run demo")
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
        f"{', '.join(map(str, ids))} (the last one is still rotating).\n\n"
        "Download the zip:\n"
        f"  curl -sS -D - {auth} -H 'Content-Type: application/json' "
        f"-d '{{\"videoIds\": [{', '.join(map(str, ids))}]}}' "
        f"{base}/generations/download -o generations.zip\n\n"
        "Status of one generation:\n"
        f"  curl -sS {auth} {base}/generations/{ids[0]}/status\n"
    )


main()

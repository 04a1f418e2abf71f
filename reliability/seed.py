"""Data for the campaign, written through the apps' services by the runner (in process).

Every raw key created here is remembered: the key-secrecy row looks for all of them.
"""

import base64
import io
import json
import os
import secrets
import zlib
from datetime import datetime, timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from generations.models import Generation
from generations.services import generation_attach_video, generation_create
from generations.storage import video_storage
from rotate.services import api_key_create

RAW_KEYS: list[str] = []
HOUR = timedelta(hours=1)


def owner_create(username: str) -> tuple[AbstractBaseUser, str]:
    """A user and one canary API key for it."""
    owner, _ = get_user_model().objects.get_or_create(username=username)
    _, raw_key = api_key_create(owner=owner, name=f"reliability canary {username}")
    RAW_KEYS.append(raw_key)
    return owner, raw_key


def key_create(owner: AbstractBaseUser, **kwargs: object) -> str:
    _, raw_key = api_key_create(owner=owner, **kwargs)
    RAW_KEYS.append(raw_key)
    return raw_key


def video_bytes(size: int, tag: str = "") -> bytes:
    """Random bytes that start with a unique, searchable tag."""
    head = f"<<{tag or secrets.token_hex(8)}>>".encode()
    return head + os.urandom(max(0, size - len(head)))


def ready_generation(
    owner: AbstractBaseUser,
    data: bytes,
    *,
    external_id: str = "",
    created_at: datetime | None = None,
) -> Generation:
    generation = generation_create(owner=owner, external_id=external_id, created_at=created_at)
    return generation_attach_video(
        generation=generation,
        file=ContentFile(data, name="v.mp4"),
        completed_at=generation.created_at,  # rendered at once: while it was live
    )


def generation_in_state(
    owner: AbstractBaseUser, status: str, *, created_at: datetime | None = None
) -> Generation:
    return generation_create(owner=owner, status=status, created_at=created_at)


def expiring_at(expires_at: datetime) -> datetime:
    """The `created_at` that gives a new generation this `expires_at` under the settings."""
    from generations.conf import generations_settings

    return expires_at - generations_settings.RETENTION


def zeros_crc(size: int) -> int:
    block = bytes(1 << 20)
    crc = 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(size % len(block)), crc)


def sparse_generation(owner: AbstractBaseUser, size: int, crc: int, external_id: str) -> int:
    """A ready generation whose video is a sparse file of `size` zero bytes."""
    generation = generation_create(owner=owner, external_id=external_id)
    name = f"sparse/{generation.pk}-{secrets.token_hex(4)}.mp4"
    path = Path(video_storage.path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        file.truncate(size)
    Generation.objects.filter(pk=generation.pk).update(
        video=name,
        video_size=size,
        video_crc32=crc,
        status=Generation.Status.SUCCEEDED,
        completed_at=timezone.now(),
    )
    return generation.pk


def due_rows(owner: AbstractBaseUser, count: int, *, created_at: datetime) -> list[str]:
    """`count` ready generations long past expiry + grace, each with a tiny file on disk."""
    directory = Path(video_storage.path("sweep"))
    directory.mkdir(parents=True, exist_ok=True)
    rows, names = [], []
    for n in range(count):
        name = f"sweep/{n}-{secrets.token_hex(6)}.mp4"
        data = b"sweep %d" % n
        (directory / Path(name).name).write_bytes(data)
        names.append(name)
        rows.append(
            Generation(
                owner=owner,
                external_id=f"sweep-{n}",
                status=Generation.Status.SUCCEEDED,
                video=name,
                video_size=len(data),
                video_crc32=zlib.crc32(data),
                created_at=created_at,
                completed_at=created_at,
                expires_at=created_at + HOUR,
            )
        )
    Generation.objects.bulk_create(rows, batch_size=2000)
    return names


def bulk_create_body(tag: str, items: int) -> bytes:
    """An E6 body of `items` generations, each a small PNG data URL (no fetch to make)."""
    image = Image.new("RGB", (64, 64), (len(tag) * 7 % 256, 200, 90))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    photo = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    generations = [{"imageUrl": photo, "externalId": f"{tag}-{n}"} for n in range(items)]
    return json.dumps({"generations": generations}).encode()

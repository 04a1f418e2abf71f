"""Seed a benchmark database: one user and key, videos of random bytes or sparse zeros.

Run inside the server's environment: `python bench/seed.py COUNT SIZE_MB [--sparse]`.
Prints one JSON line: {"raw_key", "ids"}. Sparse videos (zeros, CRC computed once) stand in
for multi-GB archives without writing them to disk.
"""

import argparse
import io
import json
import os
import sys
import zlib
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from generations.models import Generation  # noqa: E402
from generations.services import generation_attach_video, generation_create  # noqa: E402
from generations.storage import video_storage  # noqa: E402
from rotate.services import api_key_create  # noqa: E402

BLOCK = 1 << 20


def zeros_crc(size: int) -> int:
    crc, block = 0, bytes(BLOCK)
    for _ in range(size // BLOCK):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(size % BLOCK), crc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("size_mb", type=int)
    parser.add_argument("--sparse", action="store_true")
    args = parser.parse_args()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    _, raw_key = api_key_create(owner=owner, name="bench")
    size = args.size_mb * BLOCK
    crc = zeros_crc(size) if args.sparse else None
    ids = []
    for n in range(args.count):
        generation = generation_create(owner=owner, external_id=f"video-{n}")
        if args.sparse:
            name = f"bench/sparse-{generation.pk}.mp4"
            path = Path(video_storage.path(name))
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as file:
                file.truncate(size)
            Generation.objects.filter(pk=generation.pk).update(
                video=name, video_size=size, video_crc32=crc, status="succeeded"
            )
        else:
            generation_attach_video(generation=generation, file=io.BytesIO(os.urandom(size)))
        ids.append(generation.pk)
    print(json.dumps({"raw_key": raw_key, "ids": ids}))


main()

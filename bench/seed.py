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
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from generations.services import generation_attach_video, generation_create  # noqa: E402
from reliability.seed import sparse_generation, zeros_crc  # noqa: E402
from rotate.services import api_key_create  # noqa: E402

BLOCK = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("size_mb", type=int)
    parser.add_argument("--sparse", action="store_true")
    args = parser.parse_args()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    _, raw_key = api_key_create(owner=owner, name="bench")
    size = args.size_mb * BLOCK
    crc = zeros_crc(size) if args.sparse else 0
    ids = []
    for n in range(args.count):
        if args.sparse:
            ids.append(sparse_generation(owner, size, crc, f"video-{n}"))
        else:
            generation = generation_create(owner=owner, external_id=f"video-{n}")
            generation_attach_video(generation=generation, file=io.BytesIO(os.urandom(size)))
            ids.append(generation.pk)
    print(json.dumps({"raw_key": raw_key, "ids": ids}))


main()

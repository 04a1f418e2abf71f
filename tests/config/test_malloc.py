"""config/malloc.py: a process of the reference project gives the memory of decoded photos
back to the system.

With glibc's default malloc, 40 photos of 40 megapixels accepted on 16 threads left a
process at 2.9 GB (per-thread arenas keep what the decodes freed); importing the `config`
package, as every process of the project does first, fixes its mmap threshold. The figure
asserted is memory, not time: in a process of its own, as a server's worker is.
"""

import json
import os
import subprocess
import sys

from PIL import Image

from config.malloc import MMAP_THRESHOLD, large_blocks_returned
from generations.conf import generations_settings
from tests.e2e_server import ROOT

SCRIPT = """
import base64, io, json, re, sys
from concurrent.futures import ThreadPoolExecutor
import config  # what every process of the project imports first: malloc set up
import django
django.setup()
from PIL import Image
from generations.intake import image_accept

def rss_mib():
    status = open("/proc/self/status").read()
    return int(re.search(r"^VmRSS:\\s+(\\d+)", status, re.MULTILINE)[1]) // 1024

buffer = io.BytesIO()
Image.new("L", (6300, 6300)).save(buffer, "PNG")  # 39.7 MP, a few KB as PNG
photo = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
before = rss_mib()
with ThreadPoolExecutor(16) as pool:  # as one bulk create fetches: INTAKE_CONCURRENCY
    accepted = list(pool.map(lambda _: image_accept(photo), range(40)))
print(json.dumps({"before": before, "after": rss_mib()}))
"""


def test_large_blocks_returned_takes_on_glibc():
    assert large_blocks_returned()


def test_the_threshold_maps_pillows_blocks_and_not_a_downloads_buffers():
    largest_hop = 8 * 1024 * 1024  # config/asgi.py's ASGIHandler.chunk_size
    assert generations_settings.READ_CHUNK_SIZE < MMAP_THRESHOLD
    assert largest_hop < MMAP_THRESHOLD < Image.core.get_block_size()


def test_a_project_process_gives_back_the_memory_of_decoded_photos():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    memory = json.loads(completed.stdout.splitlines()[-1])
    assert memory["after"] - memory["before"] < 600, memory

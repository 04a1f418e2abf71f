"""The demo's bulk create body (`config/demo/generations.json`) is the product photos
shipped beside it, as data URLs, so the curl that `make run` prints creates from them."""

import base64
import json
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"


def test_demo_body_holds_the_shipped_photos():
    body = json.loads((DEMO / "generations.json").read_text())
    photos = {path.read_bytes(): path.name for path in DEMO.glob("*.[jp][pn]g")}
    used = set()
    for item in body["generations"]:
        for field in ("imageUrl", "endImageUrl"):
            if field in item:
                header, payload = item[field].split(",", 1)
                assert header in ("data:image/png;base64", "data:image/jpeg;base64")
                used.add(photos[base64.b64decode(payload, validate=True)])
    assert used == set(photos.values())

"""Row "hostile images": decompression bombs, truncated files, polyglots, huge metadata and
animations sent to E6 never cost a 5xx or a worker, and an intake's memory stays bounded.

Each image goes as a data URL (no fetch: this row is about decoding), first one request per
image, then all of them in one request (the intake decodes several at a time). The web
server is a gunicorn of its own with one worker, so its high-water mark (VmHWM) is the peak
of these intakes alone.
"""

import base64
import io
import json
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bench.processes import process_tree
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.seed import owner_create
from rotate.services import credit_grant

# Above the warm worker. One intake: a 40 MP image (the contract's largest) as 8-bit RGBA is
# 160 MB, and up to three frames are alive at once (the decode, its EXIF-rotated copy, the
# converted one). All at once: the decodes share INTAKE_DECODE_PIXELS (100 MP), two frames
# each (the measured peak is far below either bound: see results.json).
ONE_INTAKE_BOUND_MB = 3 * 40 * 4
ALL_AT_ONCE_BOUND_MB = 2 * 100 * 4


def _png(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A PNG of `width` × `height` black pixels: a few KB that decode to gigabytes (with
    `rows`, only that many rows of data follow the header's claim)."""
    row = b"\x00" + b"\x00" * width  # filter byte + 1 byte per grey pixel
    compressor = zlib.compressobj(9)
    chunks = (compressor.compress(row) for _ in range(height if rows is None else rows))
    data = b"".join(chunks) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _with_chunk_before_idat(png: bytes, kind: bytes, data: bytes) -> bytes:
    at = png.index(b"IDAT") - 4
    return png[:at] + _chunk(kind, data) + png[at:]


def _ztxt_bomb() -> bytes:
    """A zTXt chunk of 100 MB of text compressed to ~100 KB."""
    text = zlib.compress(b"A" * (100 << 20), 9)
    return _with_chunk_before_idat(_png(_photo()), b"zTXt", b"comment\x00\x00" + text)


def _photo(size: tuple[int, int] = (256, 256)) -> Image.Image:
    image = Image.new("RGB", size, (240, 240, 240))
    image.paste((200, 40, 40), (64, 64, size[0] - 64, size[1] - 64))
    return image


def _jpeg(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def _huge_exif() -> bytes:
    """A JPEG with a maximal EXIF segment and 60 more APP segments of padding."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    exif[0x0112] = 6  # orientation: rotate, so the EXIF is really read
    jpeg = _jpeg(_photo(), exif=exif.tobytes())
    padding = b"".join(
        b"\xff\xe2" + struct.pack(">H", 65_535) + b"\x00" * 65_533 for _ in range(60)
    )
    return jpeg[:2] + padding + jpeg[2:]


def _animated(kind: str) -> bytes:
    frames = [Image.new("RGB", (64, 64), (n * 40, 0, 0)) for n in range(5)]
    buffer = io.BytesIO()
    frames[0].save(buffer, kind, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _polyglot_zip() -> bytes:
    """A PNG that is also a zip (an archive appended after IEND)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("payload.html", "<script>alert(1)</script>")
    return _png(_photo()) + archive.getvalue()


def _polyglot_html() -> bytes:
    return _png(_photo()) + b"<html><script>alert(document.cookie)</script></html>"


def _truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def _noise(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes(
        "RGB", size, bytes((n * 7919) % 251 for n in range(size[0] * size[1] * 3))
    )


# name → (media type of the data URL, bytes, whether the contract accepts it: None where
# refusing is as right as accepting, e.g. metadata too large for the decoder to read)
CORPUS: dict[str, Callable[[], tuple[str, bytes, bool | None]]] = {
    "png claiming 50,000 × 50,000": lambda: ("png", _png_bomb(50_000, 50_000, rows=100), False),
    "png bomb 10,001 × 100": lambda: ("png", _png_bomb(10_001, 100), False),
    "png 6,400 × 6,300 (40.3 MP)": lambda: ("png", _png_bomb(6_400, 6_300), False),
    "png 6,000 × 6,000 (36 MP, accepted)": lambda: ("png", _png_bomb(6_000, 6_000), True),
    "zTXt bomb (100 MB of text)": lambda: ("png", _ztxt_bomb(), None),
    "iCCP of 2 MB": lambda: (
        "png",
        _with_chunk_before_idat(
            _png(_photo()), b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * (2 << 20))
        ),
        None,
    ),
    "truncated png (half)": lambda: ("png", _truncated(_png(_noise((512, 512))), 0.5), False),
    "truncated png (no IEND)": lambda: ("png", _png(_photo())[:-12], True),
    "truncated jpeg (half)": lambda: ("jpeg", _truncated(_jpeg(_noise((512, 512))), 0.5), False),
    "truncated webp": lambda: ("webp", _truncated(_webp(_noise((256, 256))), 0.5), False),
    "jpeg with 4 MB of APP segments and a 60 KB EXIF": lambda: ("jpeg", _huge_exif(), True),
    "progressive jpeg 6,000 × 6,000": lambda: (
        "jpeg",
        _jpeg(Image.new("RGB", (6_000, 6_000)), progressive=True, quality=95),
        True,
    ),
    "animated png (APNG)": lambda: ("png", _animated("PNG"), False),
    "animated webp": lambda: ("webp", _animated("WEBP"), False),
    "animated gif sent as png": lambda: ("png", _animated("GIF"), False),
    "png + zip polyglot": lambda: ("png", _polyglot_zip(), True),
    "png + html polyglot": lambda: ("png", _polyglot_html(), True),
    "jpeg labelled png": lambda: ("png", _jpeg(_photo()), True),
    "svg labelled png": lambda: ("png", b'<svg xmlns="http://www.w3.org/2000/svg"/>', False),
    "empty": lambda: ("png", b"", False),
    "png signature only": lambda: ("png", b"\x89PNG\r\n\x1a\n", False),
    "16-bit greyscale png": lambda: ("png", _png(Image.new("I;16", (512, 512))), True),
    "cmyk jpeg": lambda: ("jpeg", _jpeg(Image.new("CMYK", (256, 256), (0, 255, 255, 0))), True),
}


def _webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


def _item(name: str, media: str, data: bytes) -> dict[str, str]:
    url = f"data:image/{media};base64," + base64.b64encode(data).decode()
    return {"imageUrl": url, "externalId": name}


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def check_hostile_images(context: Context) -> Row:
    campaign, violations = context.campaign, Violations()
    web = campaign.gunicorn_start(
        "web-hostile-images", application_name="rotate-reliability-hostile", WEB_CONCURRENCY="1"
    )
    port = web.port or 0
    owner, raw_key = owner_create("hostile-images")
    credit_grant(owner=owner, amount=10 * 5 * len(CORPUS), note="reliability")
    corpus = {name: build() for name, build in CORPUS.items()}

    def post(items: list[dict[str, str]]) -> client.Reply:
        body = json.dumps({"generations": items}).encode()
        return client.generations_post(port, raw_key, body)

    # given a warm worker (one ordinary image through the whole intake)
    post([_item("warm-up", "png", _png(_photo()))])
    [worker] = process_tree(web.pid)[1:]
    baseline = _vm_hwm_mb(worker)
    outcomes: Counter[str] = Counter()
    # when each hostile image is sent alone, then all of them in one request
    for name, (media, data, accepted) in corpus.items():
        reply = post([_item(name, media, data)])
        if reply.status != 200:
            violations.add(f"{name}: {reply.status} {reply.body[:200]!r}")
            continue
        payload = reply.json()["data"]  # type: ignore[index]
        failures = payload["failedGenerations"]
        code = failures[0]["code"] if failures else "accepted"
        outcomes[code] += 1
        if accepted is not None and (code == "accepted") != accepted:
            violations.add(f"{name}: {code}, expected {'accepted' if accepted else 'refused'}")
    one_intake_peak = _vm_hwm_mb(worker) - baseline
    together = post([_item(name, media, data) for name, (media, data, _) in corpus.items()])
    if together.status != 200:
        violations.add(f"all at once: {together.status} {together.body[:200]!r}")
    # then no 5xx, the same worker is alive, and its peak stayed bounded
    alive = process_tree(web.pid)[1:] == [worker]
    peak = _vm_hwm_mb(worker) - baseline if alive else float("nan")
    web.stop()
    passed = (
        not violations
        and alive
        and one_intake_peak <= ONE_INTAKE_BOUND_MB
        and peak <= ALL_AT_ONCE_BOUND_MB
    )
    return Row(
        name="hostile_images",
        check="hostile images (bombs, truncations, polyglots, metadata, animations)",
        scale=f"{len(corpus)} images as data URLs, one request each, then all in one request; "
        "gunicorn with 1 worker",
        figure=f"outcomes {dict(outcomes)}; {violations.count} unexpected (5xx or wrong "
        f"verdict); worker alive: {'yes' if alive else 'NO'}; peak memory above the warm "
        f"worker: {one_intake_peak:.0f} MB one image at a time (bound {ONE_INTAKE_BOUND_MB}), "
        f"{peak:.0f} MB all at once (bound {ALL_AT_ONCE_BOUND_MB})",
        passed=passed,
        details={"violations": violations.samples},
    )

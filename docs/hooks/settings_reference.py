"""MkDocs hook: writes the configuration reference from the settings declarations
(rotate/conf.py, generations/conf.py) in place of `<!-- settings-reference -->`."""

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- settings-reference -->"


def _value(value: Any) -> str:
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        if value == timedelta(seconds=seconds) and seconds % 3600 == 0 and seconds:
            return f"`timedelta(hours={seconds // 3600})`"
        if value == timedelta(seconds=seconds) and seconds % 60 == 0 and seconds:
            return f"`timedelta(minutes={seconds // 60})`"
        if value == timedelta(seconds=seconds):
            return f"`timedelta(seconds={seconds})`"
        return f"`timedelta(milliseconds={int(value.total_seconds() * 1000)})`"
    return f"`{value!r}`"


def _kind(declaration: Any) -> str:
    return " or ".join(
        "None" if kind is type(None) else kind.__name__ for kind in declaration.kinds
    )


def _bounds(declaration: Any) -> str:
    parts = []
    if declaration.minimum is not None:
        parts.append(f"≥ {_value(declaration.minimum)}")
    if declaration.above is not None:
        parts.append(f"> {_value(declaration.above)}")
    if declaration.maximum is not None:
        parts.append(f"≤ {_value(declaration.maximum)}")
    if declaration.choices is not None:
        parts.append("one of " + ", ".join(_value(choice) for choice in declaration.choices))
    if declaration.validate is not None:
        parts.append("checked")
    if declaration.import_string:
        parts.append("dotted path")
    return ", ".join(parts) or "—"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_table(app_settings: Any, error_id: str) -> str:
    rows = [
        f"### `{app_settings.setting_name}`",
        "",
        f"An unknown key or a refused value is `{error_id}` in `manage.py check`.",
        "",
        "| key | default | type | bounds | what it does |",
        "|---|---|---|---|---|",
    ]
    for key, declaration in app_settings.declarations.items():
        rows.append(
            f"| `{key}` | {_cell(_value(declaration.default))} | {_kind(declaration)} "
            f"| {_cell(_bounds(declaration))} | {_cell(declaration.doc)} |"
        )
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    # The declarations are read from the apps themselves, as the checks read them.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from generations.conf import generations_settings
    from rotate.conf import rotate_settings

    tables = (
        settings_table(rotate_settings, "rotate.E001")
        + "\n"
        + settings_table(generations_settings, "generations.E004")
    )
    return markdown.replace(MARKER, tables)

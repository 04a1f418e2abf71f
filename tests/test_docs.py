"""The docs site's generated and checked parts: the configuration reference is made from
the settings declarations (docs/hooks/settings_reference.py), and every system check the
apps can report is explained on the install page."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from generations.conf import generations_settings
from rotate.conf import rotate_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def settings_reference() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "settings_reference.py"
    spec = importlib.util.spec_from_file_location("settings_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("app_settings", "error_id"),
    [(rotate_settings, "rotate.E001"), (generations_settings, "generations.E004")],
    ids=["ROTATE", "GENERATIONS"],
)
def test_docs_settings_reference_lists_every_declared_key(
    settings_reference, app_settings, error_id
):
    table = settings_reference.settings_table(app_settings, error_id)

    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(app_settings.declarations)
    assert error_id in table


def test_docs_settings_reference_shows_bounds_and_defaults(settings_reference):
    table = settings_reference.settings_table(generations_settings, "generations.E004")

    (row,) = [line for line in table.splitlines() if line.startswith("| `MAX_DOWNLOAD_IDS`")]
    assert "`100`" in row
    assert "≤ `100`" in row
    assert "≥ `1`" in row
    (row,) = [line for line in table.splitlines() if line.startswith("| `RETENTION`")]
    assert "`timedelta(hours=1)`" in row


def test_docs_settings_reference_replaces_its_marker_only(settings_reference):
    page = f"# Configuration\n\n{settings_reference.MARKER}\n"

    rendered = settings_reference.on_page_markdown(page, page=None)

    assert settings_reference.MARKER not in rendered
    assert "### `ROTATE`" in rendered
    assert "### `GENERATIONS`" in rendered
    assert settings_reference.on_page_markdown("# Other\n", page=None) == "# Other\n"


def test_docs_install_page_explains_every_system_check():
    sources = (ROOT / "rotate" / "checks.py").read_text() + (
        ROOT / "generations" / "checks.py"
    ).read_text()
    reported = set(re.findall(r'id="((?:rotate|generations)\.[EW]\d{3})"', sources))
    reported |= {"rotate.E001", "generations.E004"}  # passed as error_id to AppSettings.check
    install_page = (ROOT / "docs" / "install.md").read_text()

    assert reported
    assert {check for check in reported if f"| `{check}` |" not in install_page} == set()

"""MkDocs hook: writes docs/api/openapi.yaml from the code (`manage.py spectacular`) before
the build, for the OpenAPI reference page (rendered by neoteroi.mkdocsoad) and as a download."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "api" / "openapi.yaml"


def on_pre_build(config: Any, **kwargs: Any) -> None:
    SCHEMA.parent.mkdir(exist_ok=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    command = [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn"]
    subprocess.run([*command, "--file", str(SCHEMA)], cwd=ROOT, env=env, check=True)

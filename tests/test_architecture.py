"""The dependency rules of the design, enforced by scanning imports with `ast`.

config → generations → rotate, never back; Celery only in tasks modules and the Celery
app; the zip layout module and key crypto use the standard library only; OpenAPI stays out
of the views' import graph.
"""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rotate", "generations", "config")
STDLIB_ONLY = ("generations/archive.py", "generations/readers.py", "rotate/keys.py")
# drf-spectacular is optional: only these import it, and only the apps' `ready()` them.
SCHEMA_MODULES = {"rotate.schema", "generations.schema"}
# Besides them, the system check that a host's schema class fits it (rotate.W002), which
# runs at startup, never in a request.
SPECTACULAR_CHECK = "rotate.checks"
# The WSGI download path: none of it may import anything of ASGI.
WSGI_STREAM = "generations.wsgi_stream"
ASGI_MODULES = ("asyncio", "asgiref", "django.core.handlers.asgi", "generations.asgi_stream")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(
    source: str, module: str, *, is_package: bool = False, with_names: bool = False
) -> Iterator[str]:
    """Every absolute module name a source imports, anywhere in it (relative ones resolved);
    `with_names` adds `a.b` for every `from a import b`, where b may be a submodule."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from . import x` may import the submodule x.
            yield from (
                f"{target}.{alias.name}" for alias in node.names if with_names or not node.module
            )


def source_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def imports_of(path: Path, *, with_names: bool = False) -> set[str]:
    return set(
        imported_modules(
            path.read_text(encoding="utf-8"),
            module_name(path),
            is_package=path.name == "__init__.py",
            with_names=with_names,
        )
    )


def top_level(module: str) -> str:
    return module.split(".")[0]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def violations(package: str, forbidden: set[str]) -> list[str]:
    return [
        f"{relative(path)} imports {module}"
        for path in source_files()
        if relative(path).startswith(f"{package}/")
        for module in sorted(imports_of(path))
        if top_level(module) in forbidden
    ]


def test_architecture_scans_every_package():
    scanned = {relative(path).split("/")[0] for path in source_files()}

    assert scanned == set(PACKAGES)
    assert len(source_files()) > 20


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import celery.app", "rotate.x", {"celery.app"}),
        ("from generations.models import Generation", "rotate.x", {"generations.models"}),
        ("from . import views", "generations.urls", {"generations", "generations.views"}),
        ("from .models import Generation", "generations.views", {"generations.models"}),
        ("from ..conf import x", "generations.management.y", {"generations.conf"}),
        ("def f():\n    import config.settings", "rotate.x", {"config.settings"}),
        ("import os, json as j", "rotate.x", {"os", "json"}),
    ],
)
def test_architecture_import_scanner_sees_every_form(source, module, expected):
    assert set(imported_modules(source, module)) == expected


def test_architecture_import_scanner_with_names_sees_submodules_imported_by_name():
    source = "def ready():\n    from generations import schema"

    assert set(imported_modules(source, "generations.apps", with_names=True)) == {
        "generations",
        "generations.schema",
    }


def test_architecture_rotate_never_imports_generations_or_config():
    assert violations("rotate", {"generations", "config"}) == []


def test_architecture_generations_never_imports_config():
    assert violations("generations", {"config"}) == []


def test_architecture_only_tasks_dispatch_and_celery_app_import_celery():
    """The tasks, the one module that queues them (by name), and the project's Celery app."""
    offenders = [
        f"{relative(path)} imports {module}"
        for path in source_files()
        if relative(path) not in {"generations/tasks.py", "generations/dispatch.py"}
        and not (relative(path).startswith("config/") and path.name.startswith("celery"))
        for module in sorted(imports_of(path))
        if top_level(module) == "celery"
    ]

    assert offenders == []


@pytest.mark.parametrize("path", STDLIB_ONLY)
def test_architecture_pure_modules_import_only_the_standard_library(path):
    file = ROOT / path
    if not file.exists():
        pytest.fail(f"{path} is missing: the design requires it")

    pure_modules = {module_name(ROOT / pure) for pure in STDLIB_ONLY}  # pure themselves
    non_stdlib = sorted(
        module
        for module in imports_of(file)
        if top_level(module) not in sys.stdlib_module_names and module not in pure_modules
    )

    assert non_stdlib == []


def test_architecture_openapi_stays_out_of_the_views_import_graph():
    """Only the schema modules (and one system check) import drf-spectacular; only the apps'
    `ready()` imports the schema modules."""
    offenders = []
    for path in source_files():
        module = module_name(path)
        if top_level(module) == "config" or module in {*SCHEMA_MODULES, SPECTACULAR_CHECK}:
            continue
        for imported in sorted(imports_of(path, with_names=True)):
            spectacular = top_level(imported) == "drf_spectacular"
            schema = imported in SCHEMA_MODULES and path.name != "apps.py"
            if spectacular or schema:
                offenders.append(f"{relative(path)} imports {imported}")

    assert offenders == []
    for schema_module in SCHEMA_MODULES:
        app = schema_module.split(".")[0]
        assert schema_module in imports_of(ROOT / app / "apps.py", with_names=True)


def generations_import_graph() -> dict[str, set[str]]:
    """Each generations module → the generations modules it imports, anywhere in it."""
    modules = {
        module_name(path): path
        for path in source_files()
        if relative(path).startswith("generations/")
    }
    return {
        module: {
            imported
            for imported in imports_of(path)
            if imported in modules and imported not in {module, "generations"}
        }
        for module, path in modules.items()
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that can reach itself."""
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            module, trail = stack.pop()
            for imported in sorted(graph[module]):
                if imported == start:
                    cycles.append([*trail, start])
                    stack.clear()
                    break
                if imported not in seen:
                    seen.add(imported)
                    stack.append((imported, [*trail, imported]))
    return cycles


def test_architecture_import_cycle_finder_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert import_cycles(graph) == [
        ["a", "b", "c", "a"],
        ["b", "c", "a", "b"],
        ["c", "a", "b", "c"],
    ]


def test_architecture_generations_has_no_import_cycle():
    assert import_cycles(generations_import_graph()) == []


def test_architecture_generations_holds_no_context_variable():
    offenders = [
        relative(path)
        for path in source_files()
        if relative(path).startswith("generations/")
        and ("contextvars" in imports_of(path) or "ContextVar" in path.read_text(encoding="utf-8"))
    ]

    assert offenders == []


def test_architecture_wsgi_download_path_imports_nothing_of_asgi():
    graph = generations_import_graph()
    reached, pending = set(), [WSGI_STREAM]
    while pending:
        module = pending.pop()
        if module not in reached:
            reached.add(module)
            pending.extend(graph[module])
    paths = {module_name(path): path for path in source_files()}

    offenders = [
        f"{module} imports {imported}"
        for module in sorted(reached)
        for imported in sorted(imports_of(paths[module]))
        if imported.startswith(ASGI_MODULES)
    ]

    assert "generations.readers" in reached
    assert offenders == []

"""The OpenAPI schema (drf-spectacular): valid, complete, and true to a live server.

The last check is schemathesis against gunicorn: every operation, every check.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django import urls
from django.contrib.admindocs.views import simplify_regex
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from generations import views
from rotate import credit_views
from tests.e2e_server import start_gunicorn
from tests.processes import stop_process

API_PREFIX = "/api/v1/"
JSON = "application/json"


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    """The schema as `manage.py spectacular --validate --fail-on-warn` writes it."""
    path = tmp_path_factory.mktemp("openapi") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def operation(schema: dict, path: str, method: str) -> dict:
    return schema["paths"][f"{API_PREFIX}{path}"][method]


def iter_routes(resolvers: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """Every URL pattern with its full regex, through every include()."""
    for entry in resolvers:
        regex = prefix + str(entry.pattern.regex.pattern).removeprefix("^")
        if isinstance(entry, URLResolver):
            yield from iter_routes(entry.url_patterns, regex)
        else:
            yield regex, entry


def api_routes() -> dict[str, set[str]]:
    """OpenAPI path → the methods its view handles, for every route under /api/v1/."""
    routes: dict[str, set[str]] = {}
    for regex, pattern in iter_routes(get_resolver().url_patterns):
        path = simplify_regex(regex)
        if not path.startswith(API_PREFIX):
            continue
        openapi_path = path.replace("<", "{").replace(">", "}")
        view = pattern.callback.cls
        methods = {m for m in view.http_method_names if hasattr(view, m)} - {"options", "head"}
        routes[openapi_path] = methods
    return routes


def test_openapi_schema_validates(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]


def test_openapi_every_api_route_is_in_the_schema(schema):
    routes = api_routes()

    assert len(routes) >= 5
    for path, methods in routes.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, methods)


def test_openapi_paths_are_canonical_without_trailing_slash(schema):
    assert sorted(schema["paths"]) == [
        "/api/v1/credits",
        "/api/v1/credits/entries",
        "/api/v1/generations",
        "/api/v1/generations/download",
        "/api/v1/generations/download/links",
        "/api/v1/generations/{generation_id}",
        "/api/v1/generations/{generation_id}/cancel",
        "/api/v1/generations/{generation_id}/status",
        "/api/v1/webhooks/default/secret",
    ]


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("generations/download", "post", {200, 400, 401, 404, 406, 412, 413, 429}),
        ("generations/download", "get", {200, 206, 304, 400, 401, 404, 406, 412, 416, 429}),
        ("generations/download", "head", {200, 206, 304, 400, 401, 404, 406, 412, 416, 429}),
        (
            "generations/{generation_id}",
            "get",
            {200, 206, 304, 400, 401, 404, 406, 410, 412, 416, 429},
        ),
        (
            "generations/{generation_id}",
            "head",
            {200, 206, 304, 400, 401, 404, 406, 410, 412, 416, 429},
        ),
        ("generations/{generation_id}/status", "get", {200, 400, 401, 404, 406, 429}),
        ("generations/{generation_id}/cancel", "post", {200, 400, 401, 404, 406, 413, 429}),
        ("generations", "get", {200, 400, 401, 406, 429}),
        ("generations", "post", {200, 400, 401, 402, 406, 409, 413, 422, 429}),
        ("generations/download/links", "post", {200, 400, 401, 406, 413, 429}),
        ("webhooks/default/secret", "get", {200, 401, 406, 429}),
    ],
)
def test_openapi_documents_every_status_code(schema, path, method, codes):
    responses = operation(schema, path, method)["responses"]

    assert {int(code) for code in responses} == codes
    for code, response in responses.items():
        if int(code) >= 400 and method != "head":
            assert list(response["content"]) == [JSON]
            assert response["content"][JSON]["schema"] == {
                "$ref": "#/components/schemas/ErrorEnvelope"
            }
        if method == "head" or int(code) == 304:
            assert "content" not in response


def test_openapi_error_envelope_is_a_component(schema):
    components = schema["components"]["schemas"]

    assert components["ErrorEnvelope"]["required"] == ["error", "success"]
    assert components["Error"]["properties"]["meta"] == {"$ref": "#/components/schemas/ErrorMeta"}
    assert set(components["ErrorMeta"]["required"]) == {"friendlyMessage", "title", "type"}
    assert "resource" in components["ErrorMeta"]["properties"]


def headers_of(schema: dict, path: str, method: str, code: int) -> dict:
    return operation(schema, path, method)["responses"][str(code)].get("headers", {})


def test_openapi_download_headers(schema):
    ok = headers_of(schema, "generations/download", "get", 200)
    partial = headers_of(schema, "generations/download", "get", 206)
    not_found = headers_of(schema, "generations/download", "get", 404)
    unsatisfiable = headers_of(schema, "generations/download", "get", 416)

    skipped = {"X-Skipped-Not-Ready", "X-Skipped-Not-Found"}
    assert skipped | {"Content-Disposition", "Content-Length", "ETag", "Accept-Ranges"} <= set(ok)
    assert ok["Content-Disposition"]["required"] is True
    assert ok["X-Skipped-Not-Found"]["schema"]["pattern"] == "^[0-9]+(,[0-9]+)*$"
    assert "required" not in ok["X-Skipped-Not-Ready"]  # omitted when there is none
    assert skipped | {"Content-Range", "ETag"} <= set(partial)
    assert partial["Content-Range"]["required"] is True
    assert skipped <= set(not_found)
    assert unsatisfiable["Content-Range"]["required"] is True
    assert headers_of(schema, "generations/download", "get", 401)["WWW-Authenticate"]["required"]
    assert headers_of(schema, "generations/download", "get", 429)["Retry-After"]["required"]
    assert "Content-Range" not in headers_of(schema, "generations/download", "post", 200)


@pytest.mark.parametrize(
    ("path", "method"),
    [("generations/download", "get"), ("generations/{generation_id}", "get")],
)
def test_openapi_range_request_headers(schema, path, method):
    parameters = {(p["in"], p["name"]) for p in operation(schema, path, method)["parameters"]}

    assert {("header", "Range"), ("header", "If-Range")} <= parameters


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("generations/download", "post"),
        ("generations/download", "get"),
        ("generations/download", "head"),
        ("generations/{generation_id}", "get"),
        ("generations/{generation_id}", "head"),
    ],
)
def test_openapi_precondition_request_headers(schema, path, method):
    parameters = {(p["in"], p["name"]) for p in operation(schema, path, method)["parameters"]}

    assert {("header", "If-Match"), ("header", "If-None-Match")} <= parameters
    responses = operation(schema, path, method)["responses"]
    assert "4014" in str(responses["412"])
    if method != "post":
        assert "ETag" in responses["304"]["headers"]
        assert "Content-Length" not in responses["304"]["headers"]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("generations/download", "post"),
        ("generations/download", "get"),
        ("generations/{generation_id}", "get"),
    ],
)
def test_openapi_download_cap_is_a_documented_429(schema, path, method):
    too_many = operation(schema, path, method)["responses"]["429"]

    assert "downloads of this key running" in too_many["description"]
    assert too_many["headers"]["Retry-After"]["required"] is True
    examples = too_many["content"][JSON]["examples"]
    assert examples["ConcurrentDownloads"]["value"]["error"]["code"] == 4005


def test_openapi_error_examples_are_what_the_handler_sends(schema, api_client):
    # Given the documented examples of E1's 400 and 401
    responses = operation(schema, "generations/download", "post")["responses"]
    too_many = responses["400"]["content"][JSON]["examples"]["TooManyIDs"]["value"]
    unauthorised = responses["401"]["content"][JSON]["examples"]["Unauthorised"]["value"]

    # When the same requests are sent
    body = {"videoIds": list(range(1, 102))}
    sent_too_many = api_client.post(f"{API_PREFIX}generations/download", body, format="json")
    sent_unauthorised = APIClient().post(f"{API_PREFIX}generations/download", body, format="json")

    # Then the bodies are the examples
    assert sent_too_many.json() == too_many
    assert sent_unauthorised.json() == unauthorised


def test_openapi_every_operation_with_a_body_documents_413(schema):
    with_body = [
        operation_
        for item in schema["paths"].values()
        for operation_ in item.values()
        if "requestBody" in operation_
    ]

    assert len(with_body) >= 3  # E1, E6 and E7
    for operation_ in with_body:
        too_large = operation_["responses"]["413"]["content"][JSON]["examples"]["TooLarge"]
        assert too_large["value"]["error"]["code"] == 4011


@pytest.mark.parametrize(
    ("path", "method", "media_type"),
    [
        ("generations/download", "post", "application/zip"),
        ("generations/download", "get", "application/zip"),
        ("generations/{generation_id}", "get", "video/mp4"),
    ],
)
def test_openapi_binary_responses(schema, path, method, media_type):
    responses = operation(schema, path, method)["responses"]

    for code in ("200", "206") if method == "get" else ("200",):
        assert responses[code]["content"] == {
            media_type: {"schema": {"type": "string", "format": "binary"}}
        }


def test_openapi_download_request_body(schema):
    body = operation(schema, "generations/download", "post")["requestBody"]

    assert body["required"] is True
    assert set(body["content"]) == {JSON}
    request = body["content"][JSON]["schema"]
    assert set(request["properties"]) == {"videoIds", "ids"}
    assert request["properties"]["ids"]["maxItems"] == 100
    link_body = operation(schema, "generations/download/links", "post")["requestBody"]
    assert link_body["content"][JSON]["schema"] == request


def test_openapi_security(schema):
    schemes = schema["components"]["securitySchemes"]

    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["signedLink"] == {
        **schemes["signedLink"],
        "type": "apiKey",
        "in": "query",
        "name": "token",
    }
    assert operation(schema, "generations/download", "get")["security"] == [
        {"bearerAuth": []},
        {"signedLink": []},
    ]
    for path, method in [
        ("generations/download", "post"),
        ("generations/download/links", "post"),
        ("generations", "get"),
        ("generations/{generation_id}", "get"),
        ("generations/{generation_id}/status", "get"),
    ]:
        assert operation(schema, path, method)["security"] == [{"bearerAuth": []}]


def test_openapi_schema_and_docs_are_served(db):
    client = APIClient()

    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    assert schema["Content-Type"].startswith("application/vnd.oai.openapi")
    assert b"/api/v1/generations/download" in schema.content
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "/api/schema/" in page
    # Swagger UI comes from our static files (drf-spectacular-sidecar), not a CDN.
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn." not in page


@pytest.mark.e2e
def test_openapi_schemathesis_finds_no_failure(tmp_path, monkeypatch):
    """Every operation, every check, a fixed budget and seed, against gunicorn."""
    # The per-key throttle would answer 429 to a fast fuzzer: documented, but not what we test.
    monkeypatch.setenv("ROTATE_THROTTLE_RATE", "1000000/min")
    # and so would the failed-authentication throttle, to its many requests without a key
    monkeypatch.setenv("ROTATE_FAILED_AUTH_RATE", "1000000/min")
    # 412 is how `If-Match` refuses (RFC 9110 §13.1.1): a well-formed list without the current
    # ETag, by design, and a malformed one (it matches nothing). So 412 joins schemathesis's
    # defaults both for schema-valid requests and for the rejection of schema-violating ones.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "412", "422",'
        ' "429", "5xx"]\n'
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "415",'
        ' "422", "428", "429", "5xx"]\n'
        # E6 may refuse a schema-valid `webhookUrl` with 400: its host must resolve, and to
        # public addresses only, which no schema can say (contract §12).
        "[[operations]]\n"
        'include-operation-id = "createGenerations"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "3xx", "400", "401", "402", "403", "404", "409", "412",'
        ' "422", "429", "5xx"]\n'
    )
    server, process = start_gunicorn(tmp_path)
    origin = server.base_url.removesuffix("/api/v1")
    try:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)),
                *("run", f"{origin}/api/schema/"),
                *("--checks", "all", "--max-examples", "30", "--seed", "20250101"),
                *("--header", f"Authorization: Bearer {server.raw_key}"),
                *("--generation-database", "none", "--request-timeout", "30"),
                *("--report", "junit", "--report-dir", str(tmp_path / "report")),
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        stop_process(process, timeout=60)  # graceful_timeout (30 s): E6 fetches may still run
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert "13 selected / 13 total" in output
    assert "No issues found" in output, output[-5000:]
    assert server.raw_key not in output


def test_openapi_views_need_no_drf_spectacular():
    """A host site without drf-spectacular loads the apps and imports the views and URLs;
    the schema modules are never imported."""
    code = """
import sys
sys.modules["drf_spectacular"] = None  # as if not installed
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "rest_framework",
                    "rotate", "generations"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
import django
django.setup()
from generations import urls, views
assert "generations.schema" not in sys.modules
assert "rotate.schema" not in sys.modules
assert "schema" not in vars(views.GenerationDownloadView)
print("ok")
"""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_openapi_every_api_view_has_its_extension():
    """A new view gets one `OpenApiViewExtension` beside the others (rotate/schema.py or
    generations/schema.py), or it is documented from guesses."""
    undocumented = sorted(
        pattern.callback.cls.__name__
        for regex, pattern in iter_routes(get_resolver().url_patterns)
        if simplify_regex(regex).startswith(API_PREFIX)
        and OpenApiViewExtension.get_match(pattern.callback) is None
    )

    assert undocumented == []


def test_openapi_views_use_our_schema_class_whatever_the_hosts_default(settings):
    # given only our URLs, generated under the project's DEFAULT_SCHEMA_CLASS
    patterns = [
        urls.path("api/v1/", urls.include("generations.urls")),
        urls.path("api/v1/", urls.include("rotate.urls")),
    ]
    ours = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    # when a host leaves DRF's own default (which drf-spectacular cannot use)
    settings.REST_FRAMEWORK = {}
    hosts = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    # then our operations come out the same
    assert hosts == ours
    assert hosts["paths"]["/api/v1/generations/download"]["post"]["requestBody"]["required"]


def test_openapi_schema_modules_are_loaded_by_the_apps():
    # Given the apps are ready (drf-spectacular installed), their extensions are registered.
    registered = {extension.__name__ for extension in OpenApiViewExtension._registry}

    assert {
        "GenerationDownloadViewSchema",
        "GenerationDownloadLinkViewSchema",
        "GenerationVideoViewSchema",
        "GenerationStatusViewSchema",
        "GenerationListViewSchema",
        "GenerationCancelViewSchema",
        "CreditBalanceViewSchema",
        "CreditEntryListViewSchema",
    } <= registered


@pytest.mark.parametrize(
    "view",
    [
        views.GenerationDownloadView,
        views.GenerationDownloadLinkView,
        views.GenerationVideoView,
        views.GenerationStatusView,
        views.GenerationListView,
        views.GenerationCancelView,
        credit_views.CreditBalanceView,
        credit_views.CreditEntryListView,
    ],
)
def test_openapi_generating_the_schema_leaves_the_views_untouched(schema, view):
    # Given the schema has been generated (the fixture), the views carry no schema of theirs.
    assert "schema" not in vars(view)
    for method in ("get", "post"):
        handler = vars(view).get(method)
        assert not hasattr(handler, "kwargs"), (view, method)

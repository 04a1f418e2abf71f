"""The OpenAPI declarations of E8 (rotate.schema): operations, responses in the error
envelope (examples as the handler builds them), paging parameters; and the views without
drf-spectacular."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

JSON = "application/json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.parametrize(
    ("path", "operation_id", "codes", "body"),
    [
        ("/api/v1/credits", "getCredits", {200, 401, 406, 429}, "CreditBalance"),
        (
            "/api/v1/credits/entries",
            "listCreditEntries",
            {200, 400, 401, 406, 429},
            "CreditEntryPage",
        ),
    ],
)
def test_credits_openapi_operations(schema, path, operation_id, codes, body):
    item = schema["paths"][path]

    assert set(item) == {"get"}
    operation = item["get"]
    assert operation["operationId"] == operation_id
    assert operation["security"] == [{"bearerAuth": []}]
    responses = operation["responses"]
    assert {int(code) for code in responses} == codes
    assert responses["200"]["content"][JSON]["schema"] == {"$ref": f"#/components/schemas/{body}"}
    for code in codes - {200}:
        assert responses[str(code)]["content"][JSON]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
    assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert responses["429"]["headers"]["Retry-After"]["required"] is True


def test_credits_openapi_entry_page_shape(schema):
    components = schema["components"]["schemas"]
    parameters = {
        p["name"]: p for p in schema["paths"]["/api/v1/credits/entries"]["get"]["parameters"]
    }

    assert parameters["pageSize"]["schema"]["maximum"] == 100
    assert parameters["page"]["schema"]["minimum"] == 1
    assert set(components["CreditEntryPage"]["required"]) == {
        "page",
        "pageSize",
        "total",
        "entries",
    }
    entry = components["CreditEntry"]
    assert set(entry["required"]) == {
        "id",
        "kind",
        "amount",
        "balance",
        "generationIds",
        "note",
        "created_at",
    }
    assert entry["properties"]["created_at"]["format"] == "date-time"
    assert set(components["CreditBalance"]["required"]) == {"userId", "credits"}
    assert components["CreditBalance"]["properties"]["userId"]["type"] == "string"


def test_credits_openapi_envelope_documents_insufficient_credits(schema):
    components = schema["components"]["schemas"]

    assert "4003 insufficient credits" in components["Error"]["properties"]["code"]["description"]
    meta = components["ErrorMeta"]["properties"]
    assert meta["required"]["type"] == meta["available"]["type"] == "integer"
    assert set(components["ErrorMeta"]["required"]) == {"friendlyMessage", "title", "type"}


def test_credits_openapi_error_examples_are_what_the_handler_sends(schema, api_client):
    # Given the documented 400 and 401 examples of the ledger
    responses = schema["paths"]["/api/v1/credits/entries"]["get"]["responses"]
    bad_page = responses["400"]["content"][JSON]["examples"]["BadPageSize"]["value"]
    unauthorised = responses["401"]["content"][JSON]["examples"]["Unauthorised"]["value"]

    # When the same requests are sent
    sent_bad_page = api_client.get("/api/v1/credits/entries?pageSize=101")
    sent_unauthorised = APIClient().get("/api/v1/credits/entries")

    # Then the bodies are the examples
    assert sent_bad_page.json() == bad_page
    assert sent_unauthorised.json() == unauthorised


def test_credit_views_need_no_drf_spectacular():
    """A host site without drf-spectacular loads the app and imports the views and URLs;
    the schema module is never imported."""
    code = """
import sys
sys.modules["drf_spectacular"] = None  # as if not installed
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "rest_framework",
                    "rotate"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
import django
django.setup()
from rotate import credit_views, urls
assert "rotate.schema" not in sys.modules
assert "schema" not in vars(credit_views.CreditBalanceView)
print("ok")
"""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "ok", result.stderr

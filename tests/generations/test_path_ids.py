"""Path IDs of E3 (video), E4 (status) and E9 (cancel): malformed or outside 1..2^63-1 is a
400 like any other malformed ID (contract §2); a well-formed ID with no row of the caller's
is the 404 of a missing generation."""

import pytest
from rest_framework.test import APIClient

from tests.rotate.envelopes import assert_error_envelope, assert_not_found, assert_unauthorized

ENDPOINTS = {
    "E3 video": ("get", "/api/v1/generations/{id}"),
    "E4 status": ("get", "/api/v1/generations/{id}/status"),
    "E9 cancel": ("post", "/api/v1/generations/{id}/cancel"),
}
FRIENDLY = "The generation ID in the path must be an integer between 1 and 9223372036854775807"


def call(client, endpoint, generation_id):
    method, url = endpoint
    return getattr(client, method)(url.format(id=generation_id))


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
@pytest.mark.parametrize(
    "generation_id",
    ["abc", "null,null", "-1", "1.5", "1e3", "%E2%91%A0", "%20 1", "0", 2**63, 10**19, 10**30],
    ids=[
        "letters",
        "list",
        "negative",
        "fraction",
        "exponent",
        "non-ASCII digit",
        "blank",
        "zero",
        "2^63",
        "20 digits",
        "31 digits",
    ],
)
def test_malformed_path_id_is_a_validation_error(api_client, endpoint, generation_id):
    body = assert_error_envelope(call(api_client, endpoint, generation_id), status=400, code=4001)

    assert body["error"]["meta"]["friendlyMessage"] == FRIENDLY


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
@pytest.mark.parametrize("generation_id", [2**63 - 1, 10**18 - 1, 987654321])
def test_well_formed_id_without_a_row_is_the_404_of_a_missing_generation(
    api_client, endpoint, generation_id
):
    assert_not_found(call(api_client, endpoint, generation_id), resource="generation")


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_malformed_path_id_without_a_key_is_401_first(db, endpoint):
    assert_unauthorized(call(APIClient(), endpoint, "abc"))

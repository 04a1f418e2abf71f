"""Path IDs of E3 (video) and E4 (status) outside 1..2^63-1: the same JSON 404 as a missing row."""

import pytest

from tests.rotate.envelopes import assert_not_found

ENDPOINTS = {
    "E3 video": "/api/v1/generations/{id}",
    "E4 status": "/api/v1/generations/{id}/status",
}


@pytest.mark.parametrize("url", ENDPOINTS.values(), ids=ENDPOINTS.keys())
@pytest.mark.parametrize(
    "generation_id",
    [0, 2**63, 10**19 - 1, 2**63 - 1, 10**19, 10**30],
    ids=["zero", "2^63", "19 nines", "2^63-1 (no such row)", "20 digits", "31 digits"],
)
def test_out_of_range_or_overlong_id_is_the_envelope_404(api_client, url, generation_id):
    response = api_client.get(url.format(id=generation_id))

    assert_not_found(response, resource="generation")

"""Preconditions on E1/E2/E3 (contract §5, RFC 9110 §13): If-None-Match → 304, If-Match → 412."""

import pytest

from generations.preconditions import Precondition, PreconditionFailed, precondition_evaluate
from tests.factories import GenerationFactory
from tests.rotate.envelopes import assert_error_envelope

DOWNLOAD = "/api/v1/generations/download"
ETAG = '"abc"'


@pytest.fixture
def video(user):
    return GenerationFactory(owner=user, external_id="mug", video=b"m" * 5000)


@pytest.fixture(params=["E2", "E3"])
def target(request, api_client, video) -> tuple[str, str]:
    """(path, current ETag) of the archive (E2) or the single video (E3)."""
    path = (
        f"{DOWNLOAD}?ids={video.pk}" if request.param == "E2" else f"/api/v1/generations/{video.pk}"
    )
    response = api_client.get(path)
    assert response.status_code == 200
    b"".join(response.streaming_content)
    return path, response["ETag"]


def assert_not_modified(response, etag: str) -> None:
    assert response.status_code == 304
    assert response["ETag"] == etag
    assert b"".join(response.streaming_content) == b""
    assert "Content-Length" not in response
    assert "Content-Type" not in response
    assert "Content-Disposition" not in response
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Request-ID"]


def assert_precondition_failed(response) -> None:
    assert_error_envelope(response, status=412, code=4014)


@pytest.mark.parametrize("method", ["get", "head"])
@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', "*", ' {etag} ,"x"'],
    ids=["exact", "weak", "list", "star", "spaces"],
)
def test_if_none_match_naming_the_current_etag_is_304(api_client, target, method, if_none_match):
    path, etag = target
    response = getattr(api_client, method)(path, HTTP_IF_NONE_MATCH=if_none_match.format(etag=etag))
    assert_not_modified(response, etag)


@pytest.mark.parametrize("if_none_match", ['"other"', 'W/"other"', "garbage", ""])
def test_if_none_match_naming_another_etag_serves_the_body(api_client, target, if_none_match):
    path, _ = target
    response = api_client.get(path, HTTP_IF_NONE_MATCH=if_none_match)
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content)) == int(response["Content-Length"])


@pytest.mark.parametrize("method", ["get", "head"])
@pytest.mark.parametrize(
    "if_match",
    ['"other"', "W/{etag}", 'W/"other", "other2"', "garbage", ""],
    ids=["other", "weak-is-never-strong", "list", "malformed", "empty"],
)
def test_if_match_naming_no_current_etag_is_412(api_client, target, method, if_match):
    path, etag = target
    response = getattr(api_client, method)(path, HTTP_IF_MATCH=if_match.format(etag=etag))
    assert response.status_code == 412
    if method == "get":
        assert_precondition_failed(response)
    else:
        assert response.content == b""


@pytest.mark.parametrize("if_match", ["{etag}", '"other", {etag}', "*"])
def test_if_match_naming_the_current_etag_serves_the_body(api_client, target, if_match):
    path, etag = target
    response = api_client.get(path, HTTP_IF_MATCH=if_match.format(etag=etag))
    assert response.status_code == 200
    assert response["ETag"] == etag


def test_if_match_is_checked_before_range_and_if_none_match(api_client, target):
    path, etag = target
    # a failing If-Match wins over a Range (even an unsatisfiable one) and If-None-Match
    for headers in (
        {"HTTP_RANGE": "bytes=0-9"},
        {"HTTP_RANGE": "bytes=999999999-"},
        {"HTTP_IF_NONE_MATCH": etag},
    ):
        assert_precondition_failed(api_client.get(path, HTTP_IF_MATCH='"other"', **headers))
    # a matching If-None-Match wins over a Range
    assert_not_modified(
        api_client.get(path, HTTP_IF_NONE_MATCH=etag, HTTP_RANGE="bytes=999999999-"), etag
    )
    # a passing If-Match lets the Range through
    ranged = api_client.get(path, HTTP_IF_MATCH=etag, HTTP_RANGE="bytes=0-9")
    assert ranged.status_code == 206


def test_post_download_preconditions_never_answer_304(api_client, video):
    etag = api_client.get(f"{DOWNLOAD}?ids={video.pk}")["ETag"]

    def post(**headers):
        return api_client.post(DOWNLOAD, {"videoIds": [video.pk]}, format="json", **headers)

    assert_precondition_failed(post(HTTP_IF_MATCH='"other"'))
    assert_precondition_failed(post(HTTP_IF_NONE_MATCH=etag))  # RFC 9110: 412 for non-GET
    assert post(HTTP_IF_MATCH=etag).status_code == 200


def test_preconditions_do_not_hide_a_404(api_client, video):
    missing = f"{DOWNLOAD}?ids={video.pk + 1000}"
    assert api_client.get(missing, HTTP_IF_MATCH='"other"').status_code == 404
    assert api_client.get(missing, HTTP_IF_NONE_MATCH="*").status_code == 404
    assert (
        api_client.get(f"/api/v1/generations/{video.pk + 1000}", HTTP_IF_MATCH="*").status_code
        == 404
    )


def test_304_keeps_the_skipped_headers(api_client, user, video):
    rotating = GenerationFactory(owner=user)
    path = f"{DOWNLOAD}?ids={video.pk},{rotating.pk}"
    etag = api_client.get(path)["ETag"]
    response = api_client.get(path, HTTP_IF_NONE_MATCH=etag)
    assert_not_modified(response, etag)
    assert response["X-Skipped-Not-Ready"] == str(rotating.pk)


@pytest.mark.parametrize(
    ("method", "if_match", "if_none_match", "outcome"),
    [
        ("GET", None, None, Precondition.PASSED),
        ("GET", ETAG, None, Precondition.PASSED),
        ("GET", "*", None, Precondition.PASSED),
        ("GET", 'W/"abc"', None, PreconditionFailed),
        ("GET", '"ab", "abcd"', None, PreconditionFailed),  # no tag is exactly "abc"
        ("GET", None, 'W/"abc"', Precondition.NOT_MODIFIED),
        ("HEAD", None, "*", Precondition.NOT_MODIFIED),
        ("POST", None, ETAG, PreconditionFailed),
        ("GET", None, '"ABC"', Precondition.PASSED),  # entity-tags are case-sensitive
        ("GET", ETAG, '"other"', Precondition.PASSED),
    ],
)
def test_precondition_evaluate(method, if_match, if_none_match, outcome):
    if outcome is PreconditionFailed:
        with pytest.raises(PreconditionFailed):
            precondition_evaluate(
                method=method, if_match=if_match, if_none_match=if_none_match, etag=ETAG
            )
    else:
        assert (
            precondition_evaluate(
                method=method, if_match=if_match, if_none_match=if_none_match, etag=ETAG
            )
            is outcome
        )

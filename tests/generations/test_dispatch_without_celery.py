"""A site installed without the `celery` extra: E6's renders are not queued, the rows stay
`starting` for `manage.py generations_render`, and the log says so (no traceback)."""

import sys

import pytest

from generations.dispatch import render_enqueue_on_commit
from generations.models import Generation
from tests.factories import GenerationFactory


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 3])
def test_render_enqueue_on_commit_without_celery_logs_and_leaves_rows_starting(
    monkeypatch, caplog, django_capture_on_commit_callbacks, count
):
    generations = [GenerationFactory() for _ in range(count)]
    ids = [generation.pk for generation in generations]
    # Given: Celery is not importable, as in an environment without the extra
    with monkeypatch.context() as without_celery:
        without_celery.setitem(sys.modules, "celery", None)

        # When
        with django_capture_on_commit_callbacks(execute=True):
            render_enqueue_on_commit(ids)

    # Then
    assert "Celery is not installed" in caplog.text
    assert ", ".join(map(str, ids)) in caplog.text
    assert "Traceback" not in caplog.text
    assert set(Generation.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        Generation.Status.STARTING
    }

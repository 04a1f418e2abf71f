"""The migration that adds `ApiKey.link_secret` gives every existing key its own secret."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("rotate", "0001_initial")]
AFTER = [("rotate", "0002_apikey_link_secret")]


@pytest.mark.django_db(transaction=True)
def test_link_secret_migration_gives_each_existing_key_its_own_secret():
    # given keys stored before the field existed
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    user = apps.get_model("auth", "User").objects.create(username="legacy")
    ApiKey = apps.get_model("rotate", "ApiKey")
    for n in range(3):
        ApiKey.objects.create(owner=user, prefix=f"legacy{n:06d}", digest="0" * 64)
    try:
        # when the migration runs
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        apps = executor.loader.project_state(AFTER).apps
        secrets_ = list(apps.get_model("rotate", "ApiKey").objects.values_list("link_secret"))
        # then each has a different, full-length secret
        assert len({secret for (secret,) in secrets_}) == 3
        assert all(secret and len(secret) >= 43 for (secret,) in secrets_)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

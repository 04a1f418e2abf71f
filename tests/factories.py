"""factory-boy factories that go through the services, so tests only build real states."""

import io
from typing import Any

import factory
from django.contrib.auth import get_user_model

from generations.models import Generation
from generations.services import generation_attach_video, generation_create
from rotate.services import api_key_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")


class ApiKeyFactory(factory.Factory):
    """Returns `(ApiKey, raw_key)`, as `api_key_create` does."""

    class Meta:
        model = tuple

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"key {n}")
    expires_at = None

    @classmethod
    def _create(cls, model_class: Any, **kwargs: Any) -> tuple:
        return api_key_create(**kwargs)


class GenerationFactory(factory.Factory):
    """A generation; pass `video=b"..."` to attach a video (status becomes `succeeded`)."""

    class Meta:
        model = Generation

    owner = factory.SubFactory(UserFactory)
    external_id = None
    status = Generation.Status.STARTING
    video = None
    created_at = None

    @classmethod
    def _create(cls, model_class: Any, *, video: bytes | None = None, **kwargs: Any) -> Generation:
        if kwargs.get("created_at") is None:
            kwargs.pop("created_at", None)
        generation = generation_create(**kwargs)
        if video is not None:
            # rendered as soon as it was created: a video arrives while its generation is live
            completed_at = generation.created_at if "created_at" in kwargs else None
            generation_attach_video(
                generation=generation, file=io.BytesIO(video), completed_at=completed_at
            )
        return generation

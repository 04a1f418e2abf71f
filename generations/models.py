"""The Generation model (one product-rotation video, its status and its retention) and the
webhooks that report its end: the owners' signing secrets, deliveries and their attempts."""

import base64
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from generations.storage import get_video_storage


def video_upload_to(instance: "Generation", filename: str) -> str:
    # A random component keeps storage names unguessable and never reuses a deleted name.
    return f"generations/{instance.owner_id}/{instance.pk}-{secrets.token_hex(8)}.mp4"


def image_upload_to(owner_id: int) -> str:
    """Where an accepted input image is stored: beside its owner's videos, under a random
    name, because it is stored before its row exists (the row then names it)."""
    return f"generations/{owner_id}/inputs/{secrets.token_hex(12)}.png"


class GenerationQuerySet(models.QuerySet["Generation"]):
    def live(self, *, now: datetime) -> "GenerationQuerySet":
        """Not yet past `expires_at`: what any endpoint may serve."""
        return self.filter(expires_at__gt=now)

    def owned_by(self, owner: object) -> "GenerationQuerySet":
        return self.filter(owner=owner)

    def missing_checksum(self) -> "GenerationQuerySet":
        """Rows with a stored video whose size or CRC-32 was never recorded."""
        return self.exclude(video="").filter(
            Q(video_size__isnull=True) | Q(video_crc32__isnull=True)
        )

    def purge_due(self, *, cutoff: datetime, now: datetime) -> "GenerationQuerySet":
        """Past `cutoff`, still holding a file (video or input image) or not yet marked, and
        not leased or backing off."""
        return (
            self.filter(expires_at__lte=cutoff)
            .exclude(status=Generation.Status.EXPIRED, **dict.fromkeys(Generation.FILE_FIELDS, ""))
            .filter(Q(purge_retry_at__isnull=True) | Q(purge_retry_at__lte=now))
        )


class Generation(models.Model):
    class Status(models.TextChoices):
        STARTING = "starting"
        ROTATING = "rotating"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"
        EXPIRED = "expired"

    IN_PROGRESS = frozenset({Status.STARTING, Status.ROTATING})
    # Every field naming a stored blob: what expiry deletes and what the orphan scan keeps.
    FILE_FIELDS = ("video", "image", "end_image")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations"
    )
    api_key = models.ForeignKey(
        "rotate.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="generations",
        help_text="The key that created this generation, if recorded.",
    )
    # The client's own name for it, kept as sent ("" included); None when none was sent.
    external_id = models.CharField(max_length=255, blank=True, null=True, default=None)  # noqa: DJ001
    # Where its end (succeeded, failed, canceled) is reported (contract §12); "" for nowhere.
    webhook_url = models.CharField(max_length=2048, blank=True, default="")
    description = models.TextField(max_length=1000, blank=True, default="")
    # The accepted input images (re-encoded PNG, contract §9): the front, and the optional
    # last frame or back. Deleted with the video by the expiry sweep.
    image = models.FileField(storage=get_video_storage, blank=True, max_length=255)
    end_image = models.FileField(storage=get_video_storage, blank=True, max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTING)
    video = models.FileField(
        storage=get_video_storage, upload_to=video_upload_to, blank=True, max_length=255
    )
    video_size = models.BigIntegerField(null=True, blank=True)
    video_crc32 = models.BigIntegerField(null=True, blank=True)
    # Rendering progress from 0 to 1, shown while `rotating`; the renderer's error when `failed`.
    progress = models.FloatField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # The render: attempts so far (a transient failure or a lost worker retries), when the
    # current one was claimed (the watchdog's clock), and a cancel its renderer must honour.
    render_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    render_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancel_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Credits charged for it (what a refund gives back), and whether they came back.
    credits = models.PositiveIntegerField(default=0)
    refunded = models.BooleanField(default=False)
    # The generation staff retried this failed one as: a failed one is retried (charged) once.
    retried_as = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="retry_of",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    # Expiry sweep bookkeeping: a claimed or failed purge is not retried before this time.
    purge_attempts = models.PositiveIntegerField(default=0, editable=False)
    purge_retry_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # Staff download any customer's videos only with this, never with the view permission.
        permissions = [
            ("download_video", "Can download any customer's videos"),
            ("cancel_generation", "Can cancel generations (their credits come back)"),
            ("retry_generation", "Can retry failed generations (charging their credits again)"),
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="generation_owner_created"),
            models.Index(fields=["expires_at"], name="generation_expires_at"),
            models.Index(fields=["external_id"], name="generation_external_id"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(video_size__isnull=True) | Q(video_size__gte=0),
                name="generation_video_size_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(video_crc32__isnull=True)
                | Q(video_crc32__gte=0, video_crc32__lte=0xFFFFFFFF),
                name="generation_video_crc32_range",
            ),
            models.CheckConstraint(
                condition=Q(progress__isnull=True) | Q(progress__gte=0, progress__lte=1),
                name="generation_progress_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.pk}" + (f" ({self.external_id})" if self.external_id else "")

    @property
    def stored_files(self) -> list[str]:
        """The storage names this row holds: its video and its input images."""
        return [name for field in self.FILE_FIELDS if (name := getattr(self, field).name)]

    def status_at(self, now: datetime) -> str:
        """The status a client sees: past `expires_at` it is `expired`, sweep or not."""
        return self.Status.EXPIRED if now >= self.expires_at else self.status


def webhook_secret_generate() -> str:
    """A new signing secret in Standard Webhooks form: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class WebhookSecret(models.Model):
    """An owner's webhook signing secret (E10). Kept in clear: signing needs the secret itself
    (an HMAC key cannot be checked against a digest), so it is guarded like the database.
    The current one has no `signs_until`; a replaced one still signs until then."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secrets"
    )
    key = models.CharField(max_length=64, editable=False, default=webhook_secret_generate)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    signs_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["owner_id", "-created_at", "-id"]
        constraints = [
            # One current secret per owner, whatever two first uses race.
            models.UniqueConstraint(
                fields=["owner"],
                condition=Q(signs_until__isnull=True),
                name="webhook_secret_one_current",
            ),
        ]

    def __str__(self) -> str:
        state = "current" if self.signs_until is None else f"signs until {self.signs_until}"
        return f"Webhook secret of {self.owner} ({state})"


class WebhookDeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    def due(self, *, now: datetime) -> "WebhookDeliveryQuerySet":
        """Pending, and their next attempt (or a lost attempt's lease) is due."""
        return self.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)


class WebhookDelivery(models.Model):
    """One event for one URL: its body is fixed here, so every attempt sends the same bytes
    under the same `webhook-id`."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # the receiver answered 410 Gone: not tried again
        GAVE_UP = "gave_up"  # every attempt of the retry schedule failed

    class Event(models.TextChoices):
        SUCCEEDED = "generation.succeeded"
        FAILED = "generation.failed"
        CANCELED = "generation.canceled"

    generation = models.ForeignKey(
        Generation, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    event_type = models.CharField(max_length=32, choices=Event.choices)
    webhook_id = models.CharField(max_length=64, unique=True, editable=False)
    url = models.CharField(max_length=2048)
    payload = models.BinaryField(editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Attempts claimed so far; also the claim's token (the one that records its outcome).
    attempt_count = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due (or when a claimed attempt's lease ends); null once done.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        permissions = [("resend_webhookdelivery", "Can send webhook deliveries again")]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "event_type"], name="webhook_delivery_one_per_event"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} of generation {self.generation_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: its status code, how long it took, what went wrong. The
    response body is never kept."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration = models.DurationField()
    error = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["delivery_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"

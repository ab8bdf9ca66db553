"""A project's webhooks (lead-managed), each event sent to one of them (a delivery) and every attempt to send it."""
from django.conf import settings
from django.db import models
from django.utils import timezone

from annotation.models import Project


class Webhook(models.Model):
    """An http(s) URL that receives the project's chosen events, signed with ``secret`` (webhooks/sending.py). The
    secret is generated here and shown to the project's leads, who give it to the receiver."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=2000)
    secret = models.CharField(max_length=100)
    # Names from annotation.events.EVENTS.
    events = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.url


class Delivery(models.Model):
    """One event for one webhook: pending until a 2xx answer (delivered) or until the retry window closes (failed)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=50)
    # The event's id, the same in every delivery of it ("send again" too), so a receiver can drop repeats.
    event_id = models.CharField(max_length=36)
    # The JSON body sent, as an object (the envelope: id, event, project, occurred_at, data).
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # When the next attempt may start; while an attempt runs, when it counts as lost (its worker died).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    redelivery_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Pending deliveries whose next attempt is due: WHERE status = 'pending' AND next_attempt_at <= now (sweep).
            models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"), name="delivery_due"),
            # A project's recent deliveries on the webhooks page: WHERE webhook_id IN (...) ORDER BY id DESC.
            models.Index(fields=["webhook", "-id"], name="delivery_recent"),
        ]

    def __str__(self):
        return f"{self.event} -> {self.webhook_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: what the receiver answered, or why nothing was sent or nothing came back."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # The first characters of the receiver's answer, for the lead to see why it refused.
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="deliveryattempt_unique_number")]

    @property
    def ok(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300

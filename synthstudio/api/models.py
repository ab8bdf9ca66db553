"""Personal API tokens: shown once when created, stored as a SHA-256 hash of the secret, revocable, optionally
expiring."""
from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The token's public part (``ss_<prefix>_<secret>``), shown in lists so a user can tell tokens apart; the lookup
    # key.
    prefix = models.CharField(max_length=16, unique=True)
    # sha256 hex of the whole token; the token itself is never stored.
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The account page: WHERE user_id = ? ORDER BY id DESC.
            models.Index(fields=["user", "-id"], name="apitoken_user_recent"),
        ]

    def __str__(self):
        return f"{self.name} (ss_{self.prefix}_...)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

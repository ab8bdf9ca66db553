"""Who is calling: a personal token (``Authorization: Bearer ss_...``) or the browser's session (with its CSRF token).

A request that carries an Authorization header is judged by it alone: a revoked or expired token gets 401 even if the
same browser also has a session. A session request that changes something must carry the CSRF token, as the pages do
(``X-CSRFToken``); a request with no session is not checked for CSRF, so that it gets its 401.
"""
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import BaseThrottle
from ninja.utils import check_csrf

from synthstudio.api import tokens


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = tokens.token_authenticate(secret=token.strip())
        if user is not None:
            request.user = user  # services and selectors read request.user, as the pages do
        return user


class SessionAuth(APIKeyCookie):
    """Django's session, as ninja's ``django_auth``, but with CSRF checked only for a signed-in session."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest):
        if "Authorization" in request.headers or not request.user.is_authenticated:
            return None
        if not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header with the csrftoken cookie's value.")
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key):
        return request.user if key is not None and request.user.is_authenticated else None


class RateLimit(BaseThrottle):
    """At most ``settings.API_RATE_LIMITS[scope]`` = (calls, seconds) per token (per user for a session), counted in
    fixed windows in Django's cache with atomic ``add``/``incr``; a refused call gets 429 and ``Retry-After``.

    The cache must be shared by the web processes (``CACHE_URL``); with the per-process default each process counts
    on its own.
    """

    def __init__(self, scope: str):
        self.scope = scope
        self._wait = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        calls, seconds = settings.API_RATE_LIMITS[self.scope]
        token = getattr(request.user, "api_token", None)
        ident = f"t{token.prefix}" if token is not None else f"u{request.user.pk}"
        now = time.time()
        window = int(now // seconds)
        key = f"api-rate:{self.scope}:{ident}:{window}"
        cache.add(key, 0, timeout=seconds + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr: start the window again
            cache.add(key, 1, timeout=seconds + 1)
            count = 1
        self._wait.seconds = (window + 1) * seconds - now
        return count <= calls

    def wait(self) -> float:
        return max(getattr(self._wait, "seconds", 1.0), 1.0)

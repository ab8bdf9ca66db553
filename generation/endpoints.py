"""Where an LLM provider sends its requests: a base URL, a model, and the NAME of the environment variable that holds
the key. The key itself is never in the database, on a page or in a log: it is read from the worker's environment
when a request is made.

The deployment's ``OPENAI_*`` variables give the default endpoint; a project's named connections
(``generation.models.LLMConnection``) give others. Which variables a connection may name is the operator's choice,
``LLM_KEY_VARIABLES`` (``NAME`` or ``NAME@host``): a lead can only point a key at the host the operator pinned it to,
so a deployment key cannot be sent to a server of a lead's choosing.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

DEFAULT_NAME = "Deployment default"
# The host the official client talks to when no base URL is given.
OPENAI_HOST = "api.openai.com"


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str  # "" = OpenAI's own API
    model: str
    key_variable: str  # "" = the server needs no key
    connection_id: int | None = None  # None = the deployment's default

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "" if self.base_url else OPENAI_HOST

    @property
    def fingerprint(self) -> str:
        """What a capability probe is stored under: the same server, model and key behave the same."""
        raw = json.dumps([self.base_url.rstrip("/"), self.model, self.key_variable])
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def key_is_set(self) -> bool:
        """Whether this process has the key (the page's hint; the worker reads its own environment)."""
        return bool(self.key_variable and os.environ.get(self.key_variable))

    def describe(self) -> str:
        return f"{self.model or 'no model'} at {self.base_url or OPENAI_HOST}"


def default_endpoint() -> Endpoint:
    return Endpoint(name=DEFAULT_NAME, base_url=settings.OPENAI_BASE_URL, model=settings.OPENAI_MODEL,
                    key_variable="OPENAI_API_KEY")


def key_variables() -> dict[str, str | None]:
    """The variables connections may name, each with the one host it may be sent to (None: any host)."""
    allowed: dict[str, str | None] = {}
    for entry in settings.LLM_KEY_VARIABLES:
        name, _, host = entry.partition("@")
        allowed[name.strip()] = host.strip().lower() or None
    return allowed


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a connection's base URL, or None. Credentials and query strings are refused: they would
    put a secret in the database."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Use an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/v1."
    if parts.username or parts.password:
        return "Leave credentials out of the URL; name the environment variable that holds the key instead."
    if parts.query or parts.fragment:
        return "Leave the query string out of the URL: it would be stored, and keys do not belong in the database."
    return None


def key_variable_problem(name: str, base_url: str) -> str | None:
    """Why a connection to ``base_url`` may not name the key variable ``name``, or None."""
    if not name:
        return None
    allowed = key_variables()
    if name not in allowed:
        listed = ", ".join(sorted(allowed)) or "none"
        return (f"{name} is not one of the key variables the operator allows connections to use (LLM_KEY_VARIABLES: "
                f"{listed}).")
    host = allowed[name]
    if host is not None and (urlsplit(base_url).hostname or "").lower() != host:
        return f"The operator allows {name} to be sent to {host} only."
    return None

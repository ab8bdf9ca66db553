"""A project's LLM connections and the capability probes of their endpoints: reads and writes.

The deployment's default connection (``OPENAI_*``) is not a row; a project's own connections are
(``LLMConnection``), and one of them may be the project's default for new jobs. A probe's profile is stored per
endpoint (``EndpointProbe``, by fingerprint): saving a connection queues a probe of its endpoint, a lead can test any
connection again from the Connections page, and a job on a project connection that was never probed probes it first.
The deployment's default is probed when a lead tests it; until then jobs assume OpenAI's behaviour and adapt when the
server refuses or ignores something (generation/providers.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.models import Project
from generation.config import ConnectionRef
from generation.endpoints import Endpoint, base_url_problem, default_endpoint, key_variable_problem
from generation.models import EndpointProbe, LLMConnection
from generation.probe import PROFILE_VERSION, capabilities_from, probe_endpoint
from generation.providers import Capabilities, OpenAIProvider, ProviderConfigError

# A probe that has run this long died with its worker; another may take over.
PROBE_TIMEOUT = timedelta(minutes=10)
PROBE_MAX_RETRIES = 1


class ConnectionProblem(ServiceError):
    """A connection that cannot be saved; ``problems`` pairs a field name with its message."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__(" ".join(message for _, message in problems))


@dataclass(frozen=True)
class ConnectionView:
    """One row of the Connections page: the endpoint, its row (None for the deployment's default), its probe."""

    endpoint: Endpoint
    connection: LLMConnection | None
    probe: EndpointProbe | None
    is_project_default: bool

    @property
    def key(self) -> str:
        return str(self.connection.id) if self.connection else "default"


def endpoint_of(connection: LLMConnection | None) -> Endpoint:
    if connection is None:
        return default_endpoint()
    return Endpoint(name=connection.name, base_url=connection.base_url, model=connection.model,
                    key_variable=connection.key_variable, connection_id=connection.id)


def connections_for_project(*, project: Project) -> list[LLMConnection]:
    return list(LLMConnection.objects.filter(project=project))


def connection_get(*, project: Project, connection_id: int) -> LLMConnection:
    return get_object_or_404(LLMConnection, pk=connection_id, project=project)


def connection_views(*, project: Project) -> list[ConnectionView]:
    """The deployment's default first, then the project's connections, each with its probe; two queries."""
    connections = connections_for_project(project=project)
    endpoints = [(endpoint_of(None), None)] + [(endpoint_of(c), c) for c in connections]
    probes = {p.fingerprint: p for p in EndpointProbe.objects.filter(
        fingerprint__in=[e.fingerprint for e, _ in endpoints])}
    has_default = any(c.is_default for c in connections)
    return [ConnectionView(endpoint=e, connection=c, probe=probes.get(e.fingerprint),
                           is_project_default=c.is_default if c else not has_default) for e, c in endpoints]


def connection_choices(*, project: Project) -> tuple[list[tuple[str, str]], str]:
    """The start form's connection choices ("" = the deployment's default) and the project's default among them."""
    connections = connections_for_project(project=project)
    default = endpoint_of(None)
    choices = [("", f"{default.name}: {default.describe()}")]
    choices += [(str(c.id), f"{c.name}: {endpoint_of(c).describe()}") for c in connections]
    initial = next((str(c.id) for c in connections if c.is_default), "")
    return choices, initial


def probe_get(*, endpoint: Endpoint) -> EndpointProbe | None:
    return EndpointProbe.objects.filter(fingerprint=endpoint.fingerprint).first()


def probed_capabilities(*, endpoint: Endpoint) -> tuple[Capabilities | None, EndpointProbe | None]:
    probe = probe_get(endpoint=endpoint)
    return capabilities_from(probe.profile if probe else None), probe


def connection_problem(*, connection: LLMConnection | None) -> str | None:
    """Why a job cannot be started on this connection, or None: no endpoint configured, a key the operator does not
    allow or this deployment lacks, or a last probe that could not reach the server."""
    endpoint = endpoint_of(connection)
    if connection is None and not endpoint.base_url and not endpoint.key_is_set:
        return ("No LLM endpoint is configured for this deployment: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL "
                "(a compatible server), or choose one of the project's connections.")
    if connection is not None:
        problem = key_variable_problem(endpoint.key_variable, endpoint.base_url)
        if problem:
            return problem
        if endpoint.key_variable and not endpoint.key_is_set:
            return f"{endpoint.key_variable} is not set in this deployment's environment."
    probe = probe_get(endpoint=endpoint)
    if probe and not probe.pending and probe.profile and not probe.profile.get("reachable"):
        return (f"The last test of {endpoint.name} failed: {probe.profile.get('error')} Fix it and test the "
                f"connection again on the Connections page.")
    return None


def connection_ref(connection: LLMConnection | None) -> ConnectionRef:
    """What a job stores of its connection (the default's endpoint is the worker's environment at run time)."""
    if connection is None:
        return ConnectionRef(name=default_endpoint().name)
    return ConnectionRef(id=connection.id, name=connection.name, base_url=connection.base_url, model=connection.model,
                         key_variable=connection.key_variable)


def job_endpoint(ref: ConnectionRef | None) -> Endpoint:
    """The endpoint a job runs against: its connection as it was when the job started, or this worker's default.
    The operator's key policy is checked again: it may have changed since."""
    if ref is None or ref.id is None:
        return default_endpoint()
    problem = key_variable_problem(ref.key_variable, ref.base_url)
    if problem:
        raise ProviderConfigError(problem)
    return Endpoint(name=ref.name, base_url=ref.base_url, model=ref.model, key_variable=ref.key_variable,
                    connection_id=ref.id)


# ---------------------------------------------------------------------------------------------------------------------
# Writes


def connection_save(*, project: Project, user, name: str, base_url: str, model: str, key_variable: str = "",
                    is_default: bool = False, connection: LLMConnection | None = None) -> LLMConnection:
    """Create (or change) a connection, and queue a probe of its endpoint once committed. A connection marked the
    project's default takes over from the one that was."""
    name, base_url, model, key_variable = name.strip(), base_url.strip(), model.strip(), key_variable.strip()
    problems = []
    if not name:
        problems.append(("name", "Give the connection a name."))
    url_problem = base_url_problem(base_url)
    if url_problem:
        problems.append(("base_url", url_problem))
    if not model:
        problems.append(("model", "Name the model the server serves (as its /v1/models lists it)."))
    key_problem = key_variable_problem(key_variable, base_url)
    if key_problem:
        problems.append(("key_variable", key_problem))
    clash = LLMConnection.objects.filter(project=project, name__iexact=name)
    if connection is not None:
        clash = clash.exclude(pk=connection.pk)
    if name and clash.exists():
        problems.append(("name", f"The project already has a connection named '{name}'."))
    if problems:
        raise ConnectionProblem(problems)
    try:
        with transaction.atomic():
            if is_default:
                LLMConnection.objects.filter(project=project, is_default=True).exclude(
                    pk=getattr(connection, "pk", None)).update(is_default=False)
            if connection is None:
                connection = LLMConnection.objects.create(project=project, created_by=user, name=name,
                                                          base_url=base_url, model=model, key_variable=key_variable,
                                                          is_default=is_default)
            else:
                LLMConnection.objects.filter(pk=connection.pk).update(name=name, base_url=base_url, model=model,
                                                                      key_variable=key_variable,
                                                                      is_default=is_default)
                connection.refresh_from_db()
            probe_request(endpoint=endpoint_of(connection))
    except IntegrityError:
        # Another lead saved the same name, or another default, at the same moment.
        raise ConnectionProblem([("name", "Another lead changed the project's connections at the same moment; "
                                          "try again.")]) from None
    return connection


def connection_delete(*, connection: LLMConnection) -> None:
    """Jobs keep what they ran against (their configuration holds the endpoint); the probe stays for others."""
    connection.delete()


def probe_request(*, endpoint: Endpoint) -> bool:
    """Queue a probe of ``endpoint`` once the transaction commits, unless one is already waiting or running; True if
    one was queued."""
    from generation import tasks  # tasks imports the services, which import this module

    now = timezone.now()
    row = _probe_row(endpoint)
    due = EndpointProbe.objects.filter(pk=row.pk).filter(
        Q(requested_at__isnull=True) | Q(finished_at__gte=F("requested_at")) | Q(requested_at__lt=now - PROBE_TIMEOUT))
    if not due.update(requested_at=now):
        return False
    tasks.endpoint_probe.delay_on_commit(endpoint.connection_id)
    return True


def _probe_row(endpoint: Endpoint) -> EndpointProbe:
    row, _ = EndpointProbe.objects.get_or_create(fingerprint=endpoint.fingerprint,
                                                 defaults={"base_url": endpoint.base_url, "model": endpoint.model})
    return row


def _probe_provider(endpoint: Endpoint):
    def make(capabilities: Capabilities) -> OpenAIProvider:
        return OpenAIProvider(model=endpoint.model, base_url=endpoint.base_url or None,
                              key_variable=endpoint.key_variable, timeout=settings.OPENAI_TIMEOUT,
                              max_retries=PROBE_MAX_RETRIES, backoff_base=0.2, capabilities=capabilities, adapt=False)

    return make


def connection_probe_run(*, connection_id: int | None) -> EndpointProbe | None:
    """Probe a connection's endpoint (None: this process's default); None when the connection was deleted meanwhile
    or another worker is probing the endpoint."""
    connection = LLMConnection.objects.filter(pk=connection_id).first() if connection_id is not None else None
    if connection_id is not None and connection is None:
        return None
    return probe_run(endpoint=endpoint_of(connection))


def probe_run(*, endpoint: Endpoint) -> EndpointProbe | None:
    """Probe ``endpoint`` and store its profile; None when another worker is probing it right now."""
    row = _probe_row(endpoint)
    now = timezone.now()
    claimed = EndpointProbe.objects.filter(pk=row.pk).filter(
        Q(started_at__isnull=True) | Q(started_at__lt=now - PROBE_TIMEOUT)).update(started_at=now)
    if not claimed:
        return None
    try:
        profile = probe_endpoint(_probe_provider(endpoint))
    except ProviderConfigError as exc:
        profile = {"version": PROFILE_VERSION, "reachable": False, "error": str(exc), "requests": 0}
    except BaseException:
        EndpointProbe.objects.filter(pk=row.pk).update(started_at=None)
        raise
    EndpointProbe.objects.filter(pk=row.pk).update(profile=profile, finished_at=timezone.now(), started_at=None)
    row.refresh_from_db()
    return row

"""The API object: its routers, who may call it (``auth``), how refusals are answered, and its OpenAPI schema and docs.

Every operation needs a caller (a token or a signed-in session, 401 otherwise) except the schema and the docs page.
Refusals are JSON ``{"detail": ...}``: 400 for a request the services refuse (the message says what and where), 403
for an annotator on a lead operation or a session request without its CSRF token, 404 for a project the caller is
not in (as on the pages, its existence does not leak), 409 for a review of an item that changed since it was shown,
422 for a request that does not match its schema, 429 with Retry-After past a rate limit.
"""
from django.conf import settings
from django.core.exceptions import PermissionDenied
from ninja import NinjaAPI
from ninja.openapi.docs import Swagger

from annotation.errors import ServiceError, StaleItem
from annotation.io.importing import ImportFailed
from synthstudio.api import items, jobs, projects, reviews, routing
from synthstudio.api.auth import SessionAuth, TokenAuth
from synthstudio.api.parsing import StorableParser
from synthstudio.api.schemas import ErrorOut

# Documented on every operation, beside its own answers (the schema then says what each refusal looks like).
COMMON_ERRORS = {
    "400": "The services refused the request; detail says why.",
    "401": "No valid token or session.",
    "403": "Not allowed: an annotator on a lead operation, or a session request without the CSRF token.",
    "404": "No such project for you, or no such object in it.",
    "422": "The request does not match its schema.",
}


class Docs(Swagger):
    """Swagger UI from the files django-ninja ships (served as our static files, nothing from a CDN), under the
    site's Content-Security-Policy: its page (templates/api/docs.html) has no inline script or style."""

    template = "api/docs.html"

    def render_page(self, request, api, **kwargs):
        response = super().render_page(request, api, **kwargs)
        # The one exemption from the site's policy, on this page only: Swagger UI's stylesheet draws its icons as
        # data: SVG images. Images only; scripts and styles stay 'self'.
        policy = {**settings.SECURE_CSP, "img-src": ["'self'", "data:"]}
        # Written as synthstudio/csp.py writes it, which sets the header only where a view has not.
        response["Content-Security-Policy"] = "; ".join(" ".join([name, *sources]) for name, sources in policy.items())
        return response


class Api(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorOut"] = ErrorOut.model_json_schema(
            ref_template="#/components/schemas/{model}")
        for methods in schema["paths"].values():
            for operation in methods.values():
                responses = operation.setdefault("responses", {})
                for code, description in COMMON_ERRORS.items():
                    if int(code) not in responses and code not in responses:
                        responses[code] = {"description": description, "content": error}
                if "429" not in responses and any(t in operation.get("operationId", "") for t in ("export",
                                                                                                  "job_create")):
                    responses["429"] = {"description": "Rate limit reached; retry after Retry-After seconds.",
                                        "content": error,
                                        "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
        return schema


api = Api(
    title="synthstudio API",
    version="1",
    description="Projects, items, the review queue, jobs, routing and export, over the same services as the pages. "
                "Authenticate with `Authorization: Bearer <token>` (create one under Account -> API tokens).",
    auth=[TokenAuth(), SessionAuth()],
    parser=StorableParser(),
    docs=Docs(),
    urls_namespace="api",
)
for module in (projects, items, reviews, jobs, routing):
    api.add_router("", module.router)


def _refusal(status: int):
    def handler(request, exc):
        return api.create_response(request, {"detail": str(exc)}, status=status)
    return handler


api.add_exception_handler(PermissionDenied, _refusal(403))
api.add_exception_handler(StaleItem, _refusal(409))
api.add_exception_handler(ServiceError, _refusal(400))
api.add_exception_handler(ImportFailed, _refusal(400))

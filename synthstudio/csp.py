"""The Content-Security-Policy header on every response, built from ``settings.SECURE_CSP``.

Django 5.2 has no CSP support; 6.0's ``django.middleware.csp.ContentSecurityPolicyMiddleware`` reads the same setting in
the same shape, so on upgrading this module is replaced by that one line in MIDDLEWARE.
"""
from django.conf import settings

HEADER = "Content-Security-Policy"


def csp_header(policy: dict[str, list[str]]) -> str:
    """``{"default-src": ["'self'"], ...}`` -> ``"default-src 'self'; ..."``."""
    return "; ".join(" ".join([directive, *sources]) for directive, sources in policy.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.header = csp_header(settings.SECURE_CSP)

    def __call__(self, request):
        response = self.get_response(request)
        if HEADER not in response and not _debug_page(response):
            response[HEADER] = self.header
        return response


def _debug_page(response) -> bool:
    """With DEBUG on, Django answers 404 and 500 with its own pages, whose inline styles and scripts the policy would
    break; they never exist in production."""
    return settings.DEBUG and response.status_code in (404, 500)

"""The API's interactive docs in real Chromium: Swagger UI from our own static files (nothing from another origin)
renders every operation under the site's Content-Security-Policy, and "Try it out" with the session works."""
import pytest

from synthstudio.api.api import api

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_docs_page_renders_every_operation_from_our_origin_without_a_csp_violation(lead, project, new_page,
                                                                                    live_server, csp_violations):
    page = new_page(lead)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".opblock")
    operations = sum(len(methods) for methods in api.get_openapi_schema(path_prefix="/api/v1/")["paths"].values())
    assert page.locator(".opblock").count() == operations
    assert requests and all(url.startswith(live_server.url) for url in requests)
    # "Try it out" on the project list, with the signed-in session: the caller's projects come back.
    page.locator(".opblock-get .opblock-summary-path[data-path='/api/v1/projects']").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert "200" in status.inner_text()
    assert project.name in page.locator(".live-responses-table .microlight").first.inner_text()

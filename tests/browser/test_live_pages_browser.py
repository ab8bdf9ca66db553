"""Issue 18 in a real browser: pages that update themselves while work runs and stop when it ends (a job page, the
routing page after "Score and route now" with a real worker, the overview), invitations end to end, a password reset
by e-mail, and the export page's counts. With SCREENSHOTS_DIR set, it also saves the README's screenshots at
1280x800 (queue, overview, routing, dashboard, job page, export) of the demo project: `manage.py demo`'s own data."""
import os
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.dashboard import services as dashboard
from annotation.items import services as items
from annotation.models import Invitation, Item, Membership, Project, ReviewAction, Role, ScoringRound, Status
from annotation.selection import selection_run_round
from generation import services as generation
from generation.models import GenerationJob, JobMode
from tests.support.factories import add_member, make_item, make_pool, make_project, make_user
from tests.support.jobs import seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-unusual-passphrase-7"


def mark_page(page):
    """Put a marker on the page's window: still there later means the page was never reloaded."""
    page.evaluate("window.__same_page = 1")


def same_page(page) -> bool:
    return page.evaluate("window.__same_page === 1")


def test_a_job_page_fills_in_as_the_job_runs_and_stops_polling_when_it_ends(new_page, live_server):
    lead = make_user("lead")
    project = make_project(lead=lead, name="Movie reviews")
    seed(project)
    job = generation.job_create(project=project, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="offline",
                                options={"count": 6, "samples_per_request": 2, "requests_per_batch": 1,
                                         "filters": {"leakage_words": 0}}, enqueue=False)
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/generation/{job.id}/")
    page.wait_for_selector("#job-live[data-live=on]")
    assert "No items yet" in page.inner_text("#job-live")
    mark_page(page)

    generation.job_run(job_id=job.id, token="browser-test")  # what the worker does, while the page watches
    job.refresh_from_db()
    assert job.produced > 0
    page.wait_for_selector("#job-live:not([data-live])")
    live = page.inner_text("#job-live")
    assert same_page(page)
    assert "No items yet" not in live and "Succeeded" in live
    assert page.locator("#job-live tbody tr").count() >= job.produced
    assert f"{job.produced + job.filtered + job.failed} of {job.requested} samples done" in live
    # Stopped: no request for the fragment goes out any more (it polled every second while the job ran).
    polls = []
    page.on("request", lambda request: polls.append(request.url) if f"/generation/{job.id}/" in request.url else None)
    page.wait_for_timeout(2500)
    assert polls == []


def test_score_and_route_now_refreshes_the_routing_page_when_the_round_ends(new_page, live_server,
                                                                             celery_worker_process):
    lead = make_user("lead")
    project = make_project(lead=lead, name="Movie reviews")
    make_pool(project, n_per_class=15)
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/routing/")
    assert "No round yet" in page.inner_text("#routing-panel")
    mark_page(page)
    page.click("text=Score and route now")
    page.wait_for_selector("#routing-panel[data-live=on]")
    # The real worker runs the round; the panel shows it without a reload, then stops polling.
    page.wait_for_selector("#routing-panel:not([data-live]) >> text=Done", timeout=60_000)
    assert same_page(page)
    assert ScoringRound.objects.filter(project=project, state=ScoringRound.State.DONE).count() == 1
    assert "No round yet" not in page.inner_text("#routing-panel")


def test_the_overview_follows_a_running_job_and_says_what_to_do_first(new_page, live_server):
    lead = make_user("lead")
    project = make_project(lead=lead, name="Fresh project", labels=())
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/")
    assert "Start here" in page.inner_text("#overview")
    assert "Labels defined" in page.inner_text(".pipeline [aria-current=step]")

    busy = make_project(lead=lead, name="Busy project")
    seed(busy)
    job = generation.job_create(project=busy, user=lead, mode=JobMode.LABEL_CONDITIONED, provider="offline",
                                options={"count": 4, "samples_per_request": 2, "requests_per_batch": 1,
                                         "filters": {"leakage_words": 0}}, enqueue=False)
    page.goto(f"{live_server.url}/projects/{busy.id}/")
    page.wait_for_selector("#overview[data-live=on]")
    mark_page(page)
    generation.job_run(job_id=job.id, token="browser-test")
    page.wait_for_selector("#overview >> text=Succeeded")
    # The finished job queued a scoring round: the overview keeps following it until the round has run.
    assert page.locator("#overview[data-live=on]").count() == 1
    selection_run_round(project=Project.objects.get(pk=busy.pk), trigger="browser-test")  # as the worker would
    page.wait_for_selector("#overview:not([data-live])")
    assert same_page(page)
    assert "Scoring round v1" in page.inner_text("#overview")


def test_an_invitation_from_the_members_page_to_a_working_account(new_page, browser, live_server):
    lead = make_user("lead")
    project = make_project(lead=lead, name="Movie reviews")
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/members/")
    page.select_option("#members-panel .invite-form select[name=role]", "annotator")
    page.fill("#members-panel .invite-form input[name=email]", "newcomer@example.com")
    page.click("text=Make an invitation link")
    link = page.input_value("#invite-link")
    assert link.startswith(f"{live_server.url}/projects/{project.id}/join/")
    assert page.locator("#members-panel table >> text=newcomer@example.com").count() == 1

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        guest = context.new_page()
        guest.goto(link)
        assert "You are invited as annotator" in guest.inner_text("main")
        guest.fill("#id_username", "newcomer")
        guest.fill("#id_password1", "short")
        guest.fill("#id_password2", "short")
        guest.click("text=Make my account and join")
        assert "This password is too short" in guest.inner_text("main")
        guest.fill("#id_password1", PASSWORD)
        guest.fill("#id_password2", PASSWORD)
        guest.click("text=Make my account and join")
        guest.wait_for_url(f"{live_server.url}/projects/{project.id}/")
        assert "Welcome to Movie reviews" in guest.inner_text("#messages")
        assert Membership.objects.get(project=project, user__username="newcomer").role == Role.ANNOTATOR
        # The link works once.
        again = context.new_page()
        response = again.goto(link)
        assert response.status == 410 and "This invitation was used on" in again.inner_text("main")
    finally:
        context.close()
    assert Invitation.objects.get(project=project).used_by.username == "newcomer"


def test_a_password_reset_by_email(browser, live_server, mailoutbox):
    user = make_user("forgetful", email="forgetful@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.click("text=Forgot your password?")
        page.fill("#id_email", "forgetful@example.com")
        page.click("text=Send the link")
        page.wait_for_selector("text=Check your e-mail")
        assert len(mailoutbox) == 1
        link = re.search(r"(http://\S+/accounts/reset/\S+/)", mailoutbox[0].body).group(1)
        page.goto(link)
        page.fill("#id_new_password1", PASSWORD)
        page.fill("#id_new_password2", PASSWORD)
        page.click("text=Set the password")
        page.wait_for_selector("text=Your new password is set")
        page.click("text=Log in")
        page.fill("#id_username", "forgetful")
        page.fill("#id_password", PASSWORD)
        page.press("#id_password", "Enter")
        page.wait_for_url(f"{live_server.url}/")
    finally:
        context.close()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_export_page_counts_what_will_be_exported(new_page, live_server):
    lead = make_user("lead")
    project = make_project(lead=lead, name="Movie reviews")
    for i in range(3):
        item = make_item(project, f"accepted {i}")
        items.item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=lead,
                              final_labels=["positive"])
    for i in range(2):
        make_item(project, f"auto {i}", status=Status.AUTO_ACCEPTED)
    make_item(project, "waiting")
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/export/")
    total = " ".join(page.inner_text("#export-count .export-total").split())
    assert total == "3 items match: 3 verified, 0 not verified; 3 other items left out."
    page.check("input[name=include][value=all]")
    page.wait_for_selector("#export-count >> text=6 items match")
    assert "3 verified, 3 not verified" in page.inner_text("#export-count")


# --- README screenshots -----------------------------------------------------------------------------------------------

SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR", "")


@pytest.mark.skipif(not SCREENSHOTS, reason="set SCREENSHOTS_DIR to write the README's screenshots")
def test_readme_screenshots_of_the_demo_project(new_page, live_server, settings):
    """The demo project as `manage.py demo` builds it, some reviews by the annotator, then each page at 1280x800."""
    settings.DEBUG = True  # the demo command refuses to run with DEBUG off
    call_command("demo")
    project = Project.objects.get(name="Demo: TREC question types")
    annotator = type(project.created_by).objects.get(username="annotator")
    annotator.raw_password = "demo-annotator"
    lead = project.created_by
    lead.raw_password = "demo-lead"
    # Half the calibration sample reviewed (with the gold label the demo keeps in extra), then a round, as the
    # learning loop would run one.
    calibration = Item.objects.filter(project=project, status=Status.NEEDS_REVIEW, is_calibration=True)
    for item in calibration.order_by("id")[:calibration.count() // 2]:
        items.item_transition(item=item, to=Status.ACCEPTED, action=ReviewAction.ACCEPT, user=annotator,
                              final_labels=[item.extra["gold"]])
    selection_run_round(project=project, trigger="screenshots")
    add_member(project, make_user("bea"))
    dashboard.dashboard_compute(project_id=project.pk)
    job = GenerationJob.objects.filter(project=project).order_by("-id").first()
    out = Path(SCREENSHOTS)
    out.mkdir(parents=True, exist_ok=True)

    def shot(page, path, name, ready="main"):
        page.goto(f"{live_server.url}/projects/{project.id}/{path}")
        page.wait_for_selector(ready)
        page.screenshot(path=str(out / f"{name}.png"), full_page=False)
        assert (out / f"{name}.png").stat().st_size > 10_000

    page = new_page(lead)
    shot(page, "", "overview", ".pipeline")
    shot(page, "routing/", "routing", "#routing-panel")
    shot(page, "dashboard/", "dashboard", "#dashboard-body svg.chart")
    shot(page, f"generation/{job.id}/", "job", "#job-live")
    shot(page, "export/", "export", "#export-count")
    reviewer = new_page(annotator)
    shot(reviewer, "queue/", "queue", "#queue-item:focus, #queue-empty:focus")

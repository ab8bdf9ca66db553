"""The dashboard in a real browser: charts render with their values visible, the numbers open on demand, hostile label
names stay text, a recomputation swaps the body in by itself, and a screenshot is kept for people to look at."""
import pytest

from annotation.dashboard import evaluation
from annotation.dashboard import services as dashboard
from annotation.items import services
from annotation.models import AttributeDimension, EvaluationRun, Label, Review, ReviewAction, Status
from tests.support.factories import add_member, make_item, make_project, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '<img src=x onerror="window.__pwned=1">'
TOPICS = ["sports", "finance", "travel"]


def decide(item, user, action, labels=None):
    to = Status.REJECTED if action == ReviewAction.REJECT else Status.ACCEPTED
    final = None if action == ReviewAction.REJECT else list(labels or item.proposed_labels)
    return services.item_transition(item=item, to=to, action=action, user=user, final_labels=final)


@pytest.fixture
def busy_project():
    """A project with three jobs, reviews by two people, audits, overlap items and a finished evaluation."""
    lead = make_user("lead")
    project = make_project(lead=lead, name="Movie reviews", labels=("positive", "negative", HOSTILE))
    ann, bea = make_user("ann"), make_user("bea")
    for user in (ann, bea):
        add_member(project, user)
    AttributeDimension.objects.create(project=project, name="topic", values=TOPICS)
    labels = list(Label.objects.filter(project=project).values_list("name", flat=True))
    words = ["great", "dull", "moving", "slow", "sharp", "thin", "warm", "cold", "bright", "flat"]
    for job in (1, 2, 3):
        for i in range(30):
            label = labels[i % 3]
            topic = TOPICS[0] if (i + job) % 5 else TOPICS[(i + job) % 3]
            text = f"a {words[i % 10]} and {words[(i * job) % 10]} take on {topic}, number {i % (8 + 6 * job)}"
            status = Status.AUTO_ACCEPTED if i % 3 else Status.NEEDS_REVIEW
            make_item(project, text, proposed=(label,), status=status, generation_job_id=job,
                      provenance={"job": job, "conditions": {"label": label, "attributes": {"topic": topic}}},
                      is_audit=i % 7 == 0, reviews_required=2 if i % 3 == 0 and i < 20 else 1)
    waiting = list(project.items.filter(status=Status.NEEDS_REVIEW).order_by("id"))
    for n, item in enumerate(waiting[:24]):
        reviewer = ann if n % 2 else bea
        if n % 6 == 5:
            decide(item, reviewer, ReviewAction.REJECT)
        elif n % 4 == 3:
            decide(item, reviewer, ReviewAction.EDIT, labels=["negative"])
        else:
            decide(item, reviewer, ReviewAction.ACCEPT)
        if n < 12:  # a second opinion, in the shape annotation/queue/services.py logs it
            other = bea if reviewer == ann else ann
            item.refresh_from_db()
            Review.objects.create(item=item, project=project, user=other, action=ReviewAction.ACCEPT, before={},
                                  after={"status": "accepted", "labels": item.labels if n % 3 else ["positive"],
                                         "version": item.version, "second_opinion": True})
    gold = [[f"a great and warm take number {i}", "positive"] for i in range(5)]
    gold += [[f"a dull and cold take number {i}", "negative"] for i in range(5)]
    run = EvaluationRun.objects.create(project=project, created_by=lead, file_name="gold.csv", gold=gold,
                                       gold_size=len(gold))
    evaluation.evaluation_run(run_id=run.pk)
    dashboard.dashboard_compute(project_id=project.pk)
    return project, lead


def test_the_dashboard_shows_charts_with_values_and_numbers_on_demand(busy_project, new_page, live_server,
                                                                      screenshot):
    project, lead = busy_project
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/dashboard/")
    page.wait_for_selector("#dashboard-body svg.chart")
    assert page.locator("svg.chart").count() >= 12
    assert page.evaluate("window.__pwned") is None
    assert page.get_by_text(HOSTILE, exact=False).count() >= 1  # shown as text, not run
    # every chart has a visible size and printed values
    boxes = page.eval_on_selector_all("svg.chart", "els => els.map(e => e.getBoundingClientRect().width)")
    assert all(width > 100 for width in boxes)
    assert page.locator("svg.chart text.chart-value").count() > 20

    details = page.locator("#dashboard-body details").first
    assert not details.locator("table").is_visible()
    details.locator("summary").click()
    assert details.locator("table").is_visible()
    screenshot(page, "dashboard-1280x800")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#dashboard-body svg.chart")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1
    screenshot(page, "dashboard-390x844")


def test_recompute_swaps_the_new_numbers_in_without_a_reload(busy_project, new_page, live_server, monkeypatch):
    project, lead = busy_project
    page = new_page(lead)
    page.goto(f"{live_server.url}/projects/{project.id}/dashboard/")
    page.wait_for_selector("#dashboard-body svg.chart")
    page.evaluate("window.__same_page = 1")
    # No worker runs in this test: the press queues a refresh, and the body polls until the snapshot is fresh.
    monkeypatch.setattr("annotation.dashboard.tasks.dashboard_refresh.delay_on_commit", lambda pk: None)
    page.get_by_role("button", name="Recompute now").click()
    page.wait_for_selector("text=Recomputing")
    make_item(project, "one more item")
    dashboard.dashboard_compute(project_id=project.pk)
    page.wait_for_selector("text=Recomputing", state="detached", timeout=15_000)
    assert page.evaluate("window.__same_page") == 1
    assert page.locator(".stat-value").first.inner_text() == "91"

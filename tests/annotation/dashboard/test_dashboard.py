"""The dashboard: numbers gathered from the database match the rows, the page's queries stay bounded, refreshes are
asked once, and only leads see it."""
import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.dashboard import metrics
from annotation.dashboard import services as dashboard
from annotation.items import services
from annotation.models import (
    AttributeDimension,
    DashboardSnapshot,
    Item,
    Label,
    Review,
    ReviewAction,
    Source,
    Status,
)
from annotation.selection import exact_interval
from tests.support.factories import make_item, make_user


def conditions(topic):
    """Provenance as generation/services.py writes it."""
    return {"job": 1, "conditions": {"label": "positive", "attributes": {"topic": topic}}}


def decide(item, user, action, labels=None):
    """A person's first review, as the review queue records it."""
    to = Status.REJECTED if action == ReviewAction.REJECT else Status.ACCEPTED
    final = None if action == ReviewAction.REJECT else list(labels or item.proposed_labels)
    return services.item_transition(item=item, to=to, action=action, user=user, final_labels=final)


def second_opinion(item, user, labels=None, rejected=False):
    """A second opinion on an overlap item, in the shape annotation/queue/services.py logs it."""
    item.refresh_from_db()
    item.version += 1
    item.review_count += 1
    item.save(update_fields=["version", "review_count"])
    after = {"status": Status.REJECTED if rejected else Status.ACCEPTED, "labels": [] if rejected else labels,
             "version": item.version, "second_opinion": True, "text": item.text}
    action = ReviewAction.REJECT if rejected else ReviewAction.ACCEPT
    return Review.objects.create(item=item, project_id=item.project_id, user=user, action=action, before={},
                                 after=after)


def undo(review):
    return Review.objects.create(item_id=review.item_id, project_id=review.project_id, user_id=review.user_id,
                                 action=ReviewAction.UNDO, before={"version": review.after["version"]}, after={})


# --- overview numbers -------------------------------------------------------------------------------------------------


@pytest.fixture
def reviewed(project, lead, annotator):
    """Items with known statuses, sources, labels, conditions and reviews."""
    AttributeDimension.objects.create(project=project, name="topic", values=["sports", "finance"])
    items = []
    for i in range(8):
        items.append(make_item(project, f"generated {i}", proposed=("positive" if i < 6 else "negative",),
                               provenance=conditions("sports" if i < 5 else "finance"),
                               generation_job_id=1))
    make_item(project, "imported pool text", source=Source.IMPORTED, status=Status.PROPOSED, proposed=())
    make_item(project, "auto one", status=Status.AUTO_ACCEPTED, provenance=conditions("travel"))
    make_item(project, "junk", status=Status.FILTERED)
    decide(items[0], annotator, ReviewAction.ACCEPT)
    decide(items[1], annotator, ReviewAction.EDIT, labels=["negative"])
    decide(items[2], lead, ReviewAction.REJECT)
    taken_back = decide(items[6], lead, ReviewAction.ACCEPT)
    undo(taken_back)
    return items


def test_overview_counts_items_by_status_source_and_label(project, reviewed):
    data = dashboard.overview_compute(project=project)
    assert data["status_counts"]["needs_review"] == 4
    assert data["status_counts"]["accepted"] == 3  # the undone accept stays accepted until the queue reverts it
    assert data["source_counts"] == {"imported": 1, "llm": 10, "augment": 0}
    assert data["label_status"]["positive"] == {"accepted": 1, "rejected": 1, "needs_review": 3,
                                                "auto_accepted": 1, "filtered": 1}
    assert data["label_status"]["negative"] == {"accepted": 2, "needs_review": 1}
    assert data["label_status"][metrics.NO_LABEL] == {"proposed": 1}


def test_coverage_counts_usable_items_per_label_and_condition(project, reviewed):
    grid = dashboard.overview_compute(project=project)["coverage"][0]
    assert grid["dimension"] == "topic"
    assert grid["rows"] == ["positive", "negative"]
    assert grid["cols"] == ["sports", "finance", "travel"]
    # sports: items 0,1(now negative),3,4 (2 rejected is out); finance: 5 positive, 6,7 negative; travel: auto one
    assert grid["matrix"] == [[3, 1, 1], [1, 2, 0]]


def test_review_rates_leave_out_undone_reviews(project, reviewed):
    data = dashboard.overview_compute(project=project)
    assert data["rates"]["overall"]["n"] == 3
    positive = data["rates"]["per_label"]["positive"]
    assert (positive["accept"], positive["edit"], positive["reject"]) == (1, 1, 1)
    assert "negative" not in data["rates"]["per_label"]
    assert {u["user"]: u["n"] for u in data["per_user"]} == {"annotator": 2, "lead": 1}
    assert data["per_day"] == [{"day": timezone.now().date().isoformat(), "n": 3}]


def test_routing_counts_reviews_saved(project, reviewed):
    routing = dashboard.overview_compute(project=project)["routing"]
    assert routing["scored"] == 9  # auto-accepted 1 + accepted 3 + rejected 1 + waiting 4
    assert routing["auto_accepted"] == routing["reviews_saved"] == 1
    assert routing["human_reviews"] == 3


def test_accuracy_estimate_from_audits(project, annotator):
    audits = [make_item(project, f"audit {i}", is_audit=True) for i in range(10)]
    for item in audits[:7]:
        decide(item, annotator, ReviewAction.ACCEPT)
    decide(audits[7], annotator, ReviewAction.EDIT, labels=["negative"])
    decide(audits[8], annotator, ReviewAction.REJECT)
    make_item(project, "not an audit", status=Status.ACCEPTED, final_labels=["negative"])
    make_item(project, "auto", status=Status.AUTO_ACCEPTED)
    estimate = dashboard.audit_accuracy_estimate(project=project)
    assert (estimate["n"], estimate["correct"], estimate["waiting"]) == (9, 7, 1)
    assert estimate["kind"] == "random checks"  # no round has routed the project: every completed audit
    assert estimate["accuracy"] == pytest.approx(7 / 9)
    assert (estimate["low"], estimate["high"]) == pytest.approx(exact_interval(7, 9))
    # 9 accepted by people count as right, the one auto-accepted item at 7/9
    assert estimate["dataset_accuracy"] == pytest.approx((9 + 7 / 9) / 10)


# --- quality numbers --------------------------------------------------------------------------------------------------


def test_agreement_on_overlap_items_matches_the_metrics(project, lead, annotator):
    third = make_user("third")
    answers = [("positive", "positive"), ("positive", "negative"), ("negative", "negative"), ("negative", None)]
    for i, (first, second) in enumerate(answers):
        item = make_item(project, f"overlap {i}", proposed=("positive",), reviews_required=2)
        decide(item, annotator, ReviewAction.ACCEPT, labels=[first])
        if second is None:
            second_opinion(item, third, rejected=True)
        else:
            second_opinion(item, lead, labels=[second])
    withdrawn = second_opinion(make_item(project, "withdrawn", reviews_required=2), lead, labels=["negative"])
    undo(withdrawn)
    single = make_item(project, "one review only")
    decide(single, annotator, ReviewAction.ACCEPT)

    result = dashboard.agreement_compute(project=project)
    units = [["positive", "positive"], ["positive", "negative"], ["negative", "negative"], ["negative", "rejected"]]
    assert result["items"] == 4
    assert result["percent_agreement"] == pytest.approx(0.5)
    assert result["alpha"] == pytest.approx(metrics.krippendorff_alpha_nominal(units))
    pairs = {frozenset(p["raters"]): p for p in result["pairs"]}
    assert pairs[frozenset({"annotator", "lead"})]["n"] == 3
    assert pairs[frozenset({"annotator", "lead"})]["kappa"] == pytest.approx(
        metrics.cohen_kappa(["positive", "positive", "negative"], ["positive", "negative", "negative"]))


def test_confusion_compares_llm_labels_with_what_people_accepted(project, annotator):
    for i in range(3):
        decide(make_item(project, f"kept {i}", proposed=("positive",)), annotator, ReviewAction.ACCEPT)
    decide(make_item(project, "fixed", proposed=("positive",)), annotator, ReviewAction.EDIT, labels=["negative"])
    decide(make_item(project, "thrown", proposed=("negative",)), annotator, ReviewAction.REJECT)
    make_item(project, "seed", status=Status.ACCEPTED, source=Source.IMPORTED, proposed=(), final_labels=["negative"])
    result = dashboard.confusion_compute(project=project, labels=["positive", "negative"])
    assert result["n"] == 4
    assert result["matrix"] == [[3, 0], [1, 0]]  # rows: person, columns: LLM
    assert result["per_label"]["positive"]["precision"] == pytest.approx(3 / 4)


def test_diversity_counts_exact_duplicates_over_all_items_and_traces_jobs(project):
    for i in range(4):
        make_item(project, "the very same text", proposed=("positive",), generation_job_id=1)
    for i, text in enumerate(["alpha beta", "gamma delta", "epsilon zeta", "eta theta"]):
        make_item(project, text, proposed=("negative",), generation_job_id=2)
    make_item(project, "the very same text", status=Status.FILTERED, generation_job_id=2)
    make_item(project, "seed", source=Source.IMPORTED)
    result = dashboard.diversity_compute(project=project)
    assert result["overall"]["items"] == 8
    assert result["overall"]["exact_duplicate_rate"] == pytest.approx(3 / 8)
    assert [j["job"] for j in result["per_job"]] == [1, 2]
    assert result["per_job"][0]["exact_duplicate_rate"] == pytest.approx(3 / 4)
    assert result["per_job"][0]["near_duplicate_rate"] == pytest.approx(1.0)
    assert result["per_job"][1]["near_duplicate_rate"] == 0.0
    assert result["per_label"]["negative"]["distinct_1"] == pytest.approx(1.0)


def test_diversity_samples_large_groups(project, monkeypatch):
    monkeypatch.setattr(dashboard, "DIVERSITY_SAMPLE", 5)
    Item.objects.bulk_create(
        Item(project=project, text=f"text {i}", source=Source.LLM, status=Status.NEEDS_REVIEW,
             proposed_labels=["positive"], content_hash=f"h{i}") for i in range(40)
    )
    result = dashboard.diversity_compute(project=project)
    assert result["overall"]["items"] == 40
    assert result["overall"]["sample"] == 5
    assert result["per_label"]["positive"]["sample"] == 5


# --- bounded queries --------------------------------------------------------------------------------------------------


def _grow(project, n):
    Item.objects.bulk_create(
        Item(project=project, text=f"bulk {project.pk} {i}", source=Source.LLM, status=Status.NEEDS_REVIEW,
             proposed_labels=["positive" if i % 2 else "negative"], content_hash=f"{project.pk}-{i}",
             provenance=conditions("sports"), generation_job_id=i % 3 + 1)
        for i in range(n)
    )


@pytest.mark.parametrize("size", [10, 300])
def test_computations_run_a_fixed_number_of_queries(project, size, django_assert_max_num_queries):
    AttributeDimension.objects.create(project=project, name="topic", values=["sports"])
    _grow(project, size)
    # overview: labels, status, label x status, sources, rates, users, days, audits (3), dimensions, one per dimension
    with django_assert_max_num_queries(12):
        dashboard.overview_compute(project=project)
    # quality: labels, jobs, labels, totals, the id stream, texts (one chunk), agreement, confusion
    with django_assert_max_num_queries(9):
        dashboard.quality_compute(project=project)


@pytest.mark.parametrize("size", [10, 300])
def test_page_runs_a_fixed_number_of_queries(client, project, lead, size, django_assert_max_num_queries):
    _grow(project, size)
    dashboard.dashboard_compute(project_id=project.pk)
    client.force_login(lead)
    with django_assert_max_num_queries(8):
        response = client.get(reverse("dashboard", args=[project.pk]))
    assert response.status_code == 200
    assert f"<span class=\"stat-value\">{size}</span>" in response.content.decode()


# --- refresh ----------------------------------------------------------------------------------------------------------


def test_refresh_is_asked_once_until_done(project, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("annotation.dashboard.tasks.dashboard_refresh.delay_on_commit", sent.append)
    assert dashboard.dashboard_refresh_request(project=project) is True
    assert dashboard.dashboard_refresh_request(project=project, force=True) is False
    assert sent == [project.pk]
    assert DashboardSnapshot.objects.filter(project=project, pending_since__isnull=False).count() == 2

    dashboard.dashboard_compute(project_id=project.pk)
    assert not DashboardSnapshot.objects.filter(project=project, pending_since__isnull=False).exists()
    assert dashboard.dashboard_refresh_request(project=project) is False  # fresh
    assert dashboard.dashboard_refresh_request(project=project, force=True) is True
    assert sent == [project.pk, project.pk]


def test_a_refresh_left_pending_by_a_dead_worker_is_asked_again(project, monkeypatch):
    monkeypatch.setattr("annotation.dashboard.tasks.dashboard_refresh.delay_on_commit", lambda pk: None)
    dashboard.dashboard_refresh_request(project=project)
    DashboardSnapshot.objects.filter(project=project).update(
        pending_since=timezone.now() - dashboard.PENDING_TIMEOUT - timezone.timedelta(seconds=1))
    assert dashboard.dashboard_refresh_request(project=project) is True


def test_a_failing_computation_is_recorded_and_the_other_kind_still_computed(project, monkeypatch):
    def broken(*, project):
        raise RuntimeError("boom")

    monkeypatch.setattr(dashboard, "quality_compute", broken)
    dashboard.dashboard_compute(project_id=project.pk)
    snapshots = {s.kind: s for s in DashboardSnapshot.objects.filter(project=project)}
    assert snapshots["quality"].error == "RuntimeError: boom"
    assert snapshots["overview"].error == "" and snapshots["overview"].data["status_counts"]


# --- views (who may open them: tests/system/test_urlconf_permissions.py) ----------------------------------------------


def test_nav_shows_the_dashboard_tab_to_leads_only(client, project, lead, annotator):
    client.force_login(lead)
    url = reverse("dashboard", args=[project.pk])
    assert url in client.get(reverse("project_detail", args=[project.pk])).content.decode()
    client.force_login(annotator)
    assert url not in client.get(reverse("project_detail", args=[project.pk])).content.decode()


def test_first_visit_asks_for_numbers_and_polls(client, project, lead, monkeypatch):
    sent = []
    monkeypatch.setattr("annotation.dashboard.tasks.dashboard_refresh.delay_on_commit", sent.append)
    client.force_login(lead)
    body = client.get(reverse("dashboard", args=[project.pk])).content.decode()
    assert sent == [project.pk]
    assert "Recomputing" in body
    assert 'hx-trigger="every 3s"' in body
    assert "<html" in body


def test_htmx_poll_returns_the_body_alone_and_stops_when_done(client, project, lead, reviewed):
    dashboard.dashboard_compute(project_id=project.pk)
    client.force_login(lead)
    body = client.get(reverse("dashboard", args=[project.pk]), headers={"HX-Request": "true"}).content.decode()
    assert body.lstrip().startswith('<div id="dashboard-body"')
    assert "<html" not in body
    assert "every 3s" not in body
    assert "Coverage: labels × attributes" in body
    assert "reviews were saved" in body


def test_full_page_shows_charts_with_their_numbers(client, project, lead, reviewed):
    dashboard.dashboard_compute(project_id=project.pk)
    client.force_login(lead)
    body = client.get(reverse("dashboard", args=[project.pk])).content.decode()
    assert body.count("<svg") >= 8
    assert body.count("<details>") >= 8
    assert "1 thin cell" in body or "thin cells" in body


def test_refresh_button_without_and_with_htmx(client, project, lead, monkeypatch):
    sent = []
    monkeypatch.setattr("annotation.dashboard.tasks.dashboard_refresh.delay_on_commit", sent.append)
    client.force_login(lead)
    url = reverse("dashboard_refresh", args=[project.pk])
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard", args=[project.pk])
    response = client.post(url, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="dashboard-body"')
    assert "already running" in body
    assert sent == [project.pk]


def test_label_names_are_escaped_in_charts(client, project, lead, annotator):
    hostile = '<script>alert("x")</script>'
    Label.objects.create(project=project, name=hostile, order=9)
    item = make_item(project, "hostile", proposed=(hostile,))
    decide(item, annotator, ReviewAction.ACCEPT)
    dashboard.dashboard_compute(project_id=project.pk)
    client.force_login(lead)
    body = client.get(reverse("dashboard", args=[project.pk])).content.decode()
    assert hostile not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body

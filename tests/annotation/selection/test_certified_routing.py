"""Routing a lead can trust (issue 14): calibration before any auto-accept, target-driven routing, the certificate,
and an LLM declared unreliable, with its earlier auto-accepts withdrawn and a banner on every lead page."""
import pytest
from django.urls import reverse
from django.utils.html import escape

from annotation.models import Item, Project, Review, ReviewAction, RoutingMode, Status
from annotation.queue import services as queue
from annotation.selection import rounds, selection_run_round, tasks
from annotation.selection.estimates import routing_sentences
from tests.support.factories import flip, make_item, make_pool, review_with_gold


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.selection_round, "delay", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def policy(project, **fields):
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()


def calibration_items(project):
    return list(Item.objects.filter(project=project, is_calibration=True).order_by("id"))


def test_new_projects_route_to_a_target(project):
    assert project.routing_mode == RoutingMode.TARGET


def test_a_calibration_sample_is_drawn_and_nothing_is_auto_accepted_before_it_is_reviewed(project):
    items = make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    flagged = calibration_items(project)
    assert len(flagged) == 35  # ceil(1.96² * 0.9 / 0.1)
    assert {i.status for i in flagged} == {Status.NEEDS_REVIEW}
    # Drawn from every ambiguity stratum, not only the most ambiguous items.
    ambiguity = sorted(i.ambiguity for i in Item.objects.filter(project=project).exclude(proposed_labels=[]))
    median = ambiguity[len(ambiguity) // 2]
    assert 10 < sum(i.ambiguity <= median for i in flagged) < 25
    assert not Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()
    assert Item.objects.get(pk=items[4].pk).status == Status.NEEDS_REVIEW  # the abstention
    waiting = Item.objects.filter(project=project, status=Status.PROPOSED)
    assert waiting.count() == 120 - 35 - 1
    assert {i.route_reason for i in waiting} == {
        "waiting: nothing is auto-accepted until the calibration sample is reviewed (0 of 35 done)"}
    assert Review.objects.filter(project=project, action=ReviewAction.ROUTE).count() == 36
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["phase"] == "calibrating" and state["calibration"]["size"] == 35


def test_the_last_calibration_review_runs_a_round_that_auto_accepts_under_the_bound(
        project, annotator, sent, django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    flagged = calibration_items(project)
    with django_capture_on_commit_callbacks(execute=True):
        review_with_gold(project, annotator, flagged[:-1])
    assert sent == []
    with django_capture_on_commit_callbacks(execute=True):
        review_with_gold(project, annotator, flagged[-1:])
    assert sent == [((project.pk,), {"force": True})]

    selection_run_round(project=project)
    project.refresh_from_db()
    state = project.routing_state
    auto = Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED)
    assert auto.count() > 0
    assert Review.objects.filter(project=project, action=ReviewAction.AUTO_ACCEPT).count() == auto.count()
    # Target mode: the least ambiguous are auto-accepted, everything else goes to people.
    in_review = Item.objects.filter(project=project, status=Status.NEEDS_REVIEW)
    assert max(auto.values_list("ambiguity", flat=True)) <= min(in_review.values_list("ambiguity", flat=True))
    assert not Item.objects.filter(project=project, status=Status.PROPOSED).exists()
    assert state["calibration"] == {"size": 35, "done": 35, "right": state["calibration"]["right"], "n": 35}
    assert state["phase"] in ("not_yet", "reached") and state["max_p_error"] is not None


def test_the_certificate_is_reached_only_when_nothing_waits_and_the_bound_holds(project, annotator, client, lead):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.95, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    project.refresh_from_db()
    state = project.routing_state
    waiting = Item.objects.filter(project=project, status__in=(Status.PROPOSED, Status.NEEDS_REVIEW))
    if waiting.exists():
        assert state["phase"] == "not_yet" and state["remaining"] == waiting.count()
        client.force_login(lead)
        body = client.get(reverse("routing", args=[project.id])).content.decode()
        assert f"about {waiting.count()} more reviews expected" in body
        review_with_gold(project, annotator, list(waiting))
        selection_run_round(project=project)
        project.refresh_from_db()
        state = project.routing_state
    assert state["phase"] == "reached"
    assert state["lower_bound"] >= 0.95 and state["estimate"] >= state["lower_bound"]
    client.force_login(lead)
    body = client.get(reverse("routing", args=[project.id])).content.decode()
    assert "Target 95% reached with 95% confidence" in body
    assert f"{state['reviews']} reviews so far; reviewing more will not change the export" in body


def test_a_bound_an_audit_breaks_sends_the_state_back(project, annotator):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.95, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    review_with_gold(project, annotator, Item.objects.filter(project=project, status=Status.NEEDS_REVIEW))
    selection_run_round(project=project)
    assert Project.objects.get(pk=project.pk).routing_state["phase"] == "reached"
    # Audits find the LLM wrong on items people checked: the bound no longer holds.
    auto = set(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).values_list("pk", flat=True))
    assert auto
    # Later checks find the LLM's label wrong on the least ambiguous items people saw (rejected as wrong labels).
    checked = Item.objects.filter(project=project, status=Status.ACCEPTED).order_by("ambiguity")[:15]
    Item.objects.filter(pk__in=[i.pk for i in checked]).update(status=Status.REJECTED)
    selection_run_round(project=project)
    project.refresh_from_db()
    assert project.routing_state["phase"] in ("not_yet", "unreliable")
    assert Item.objects.filter(pk__in=auto, status=Status.NEEDS_REVIEW).exists()


def test_the_round_counts_the_items_whose_audits_wait_apart_from_those_whose_checks_are_decided(project, annotator):
    make_pool(project, n_per_class=60, abstain=())
    policy(project, target_accuracy=0.8, audit_rate=0.2)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)  # routes: audits drawn among the items it auto-accepts, none reviewed yet
    region = Project.objects.get(pk=project.pk).routing_state["region"]
    auto = list(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).values_list("ambiguity", flat=True))
    waiting = list(Item.objects.filter(project=project, is_audit=True, status=Status.NEEDS_REVIEW)
                   .values_list("ambiguity", flat=True))
    assert auto and waiting and min(waiting) <= max(auto)
    below = [zone for zone in region["zones"] if zone is not region["zones"][-1]]
    assert sum(zone["items"] for zone in region["zones"]) == len(auto)
    assert sum(zone["items"] for zone in below) == sum(a < min(waiting) for a in auto)
    # The audits reviewed, the next round finds none waiting among what it auto-accepts: one zone, every check.
    review_with_gold(project, annotator, Item.objects.filter(project=project, is_audit=True,
                                                             status=Status.NEEDS_REVIEW))
    selection_run_round(project=project)
    region = Project.objects.get(pk=project.pk).routing_state["region"]
    waiting = list(Item.objects.filter(project=project, status=Status.NEEDS_REVIEW, is_audit=True)
                   .values_list("ambiguity", flat=True))
    auto = list(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).values_list("ambiguity", flat=True))
    assert len(region["zones"]) == (2 if waiting and min(waiting) <= max(auto) else 1)


def weak_pool(project, n=120):
    """Texts that say nothing about their label, and an LLM right on 3 of every 10: no subset of its labels is good."""
    words = ["table", "river", "window", "paper", "stone", "cloud", "garden", "engine"]
    for i in range(n):
        gold = "positive" if (i * 7) % 11 < 5 else "negative"
        llm = gold if i % 10 < 3 else ("negative" if gold == "positive" else "positive")
        make_item(project, f"the {words[i % 8]} and the {words[(i * 3) % 8]} {i}", status=Status.PROPOSED,
                  proposed=(llm,), extra={"gold": gold})


def test_a_weak_llm_is_declared_unreliable_and_its_auto_accepts_are_withdrawn(project, annotator, client, lead):
    weak_pool(project)
    policy(project, target_accuracy=0.95, audit_rate=0.0)
    selection_run_round(project=project)
    # Items a budget-mode round auto-accepted before this project was calibrated.
    earlier = list(Item.objects.filter(project=project, status=Status.PROPOSED)[:10])
    Item.objects.filter(pk__in=[i.pk for i in earlier]).update(status=Status.AUTO_ACCEPTED)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    project.refresh_from_db()
    state = project.routing_state
    assert state["phase"] == "unreliable"
    assert not Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()
    for item in earlier:
        item.refresh_from_db()
        assert item.status == Status.NEEDS_REVIEW and item.route_reason == rounds.WITHDRAWN
        assert Review.objects.filter(item=item, action=ReviewAction.ROUTE, note=rounds.WITHDRAWN).count() == 1
    assert not Item.objects.filter(project=project, status=Status.PROPOSED).exists()
    llm = state["llm"]
    assert llm["right"] < 0.5 * llm["n"]
    sentence = (f"The LLM's labels were right on {llm['right']} of {llm['n']} checked items "
                f"({llm['right'] / llm['n']:.0%}, 95% interval {llm['low']:.0%}-{llm['high']:.0%}). "
                "Auto-accept is off; items need people or a better LLM/prompt.")
    client.force_login(lead)
    for page in ("project_settings", "routing", "export"):
        body = client.get(reverse(page, args=[project.id])).content.decode()
        assert escape(sentence) in body, page
    # Annotators do not get the lead's banner.
    client.force_login(annotator)
    assert escape(sentence) not in client.get(reverse("queue", args=[project.id])).content.decode()


def test_a_review_cap_keeps_people_within_it_and_says_the_target_is_out_of_reach(project, annotator):
    make_pool(project, n_per_class=60)
    policy(project, target_accuracy=0.9, audit_rate=0.0, review_cap=20)
    selection_run_round(project=project)
    assert Item.objects.filter(project=project, status=Status.NEEDS_REVIEW).count() == 20
    capped = Item.objects.filter(project=project, status=Status.PROPOSED, is_calibration=True)
    assert capped.count() == 35 + 1 - 20
    assert {i.route_reason for i in capped} == {"waiting: the review cap (20 items) is reached"}
    project.refresh_from_db()
    assert project.routing_state["cap_reached"]
    assert "cannot be certified within it" in routing_sentences(project.routing_state).headline


def test_budget_mode_auto_accepts_only_what_the_target_allows(project, annotator):
    make_pool(project, n_per_class=60, wrong=tuple(range(0, 120, 8)), abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0, routing_mode=RoutingMode.BUDGET, review_budget=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    policy(project, target_accuracy=0.99)
    selection_run_round(project=project)
    project.refresh_from_db()
    held_back = Item.objects.filter(project=project, status=Status.PROPOSED)
    assert held_back.exists()  # the budget leaves no review slot, yet the target forbids auto-accepting these
    assert {i.route_reason[:60] for i in held_back} == {"waiting: the 99% target does not allow auto-accepting it (es"}
    auto = Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED)
    if auto.exists():
        assert max(auto.values_list("ambiguity", flat=True)) <= min(held_back.values_list("ambiguity", flat=True))


def job_pool(project, job_id, *, wrong_every=0, n_per_class=40):
    """Items a generation job produced (its own cohort): the 'LLM' of that job is wrong on every ``wrong_every``-th."""
    from tests.support.factories import corpus, flip

    items = []
    for i, (text, gold) in enumerate(corpus(n_per_class)):
        label = flip(gold) if wrong_every and i % wrong_every == 0 else gold
        items.append(make_item(project, f"{text} from job {job_id}", status=Status.PROPOSED, proposed=(label,),
                               extra={"gold": gold}, generation_job_id=job_id))
    return items


def test_a_new_job_is_calibrated_on_its_own_before_its_items_are_auto_accepted(project, annotator):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    assert Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()

    job_items = job_pool(project, 7)
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["phase"] == "calibrating"
    assert state["cohorts"]["job:7"] == {"name": "job #7", "size": 35, "done": 0, "right": 0, "n": 0,
                                         "unreliable": False, "calibrating": True, "topping_up": False,
                                         "calibration_verdict": None,
                                         "marks": {"rate": 0.4375, "drawn_upto": job_items[-1].pk, "upto": None}}
    assert not state["cohorts"]["import"]["calibrating"]
    mine = Item.objects.filter(pk__in=[i.pk for i in job_items])
    assert mine.filter(is_calibration=True, status=Status.NEEDS_REVIEW).count() == 35
    assert not mine.filter(status=Status.AUTO_ACCEPTED).exists()
    assert {i.route_reason for i in mine.filter(is_calibration=False)} == {
        "waiting: nothing is auto-accepted until the calibration sample is reviewed (0 of 35 done)"}
    # The imported cohort, calibrated before, keeps its auto-accepts meanwhile.
    assert Item.objects.filter(project=project, generation_job_id=None, status=Status.AUTO_ACCEPTED).exists()
    assert "job #7: 0 of 35 reviewed" in routing_sentences(state).headline

    review_with_gold(project, annotator, mine.filter(is_calibration=True))
    selection_run_round(project=project)
    assert mine.filter(status=Status.AUTO_ACCEPTED).exists()


def test_items_imported_into_a_calibrated_cohort_get_their_share_of_the_sample_and_wait_for_it(project, annotator):
    """A second import of labels from the same source: its items are not auto-accepted on the first import's
    calibration. A share of them at the first sample's rate joins the sample; the new items wait for it while the
    older ones keep their auto-accepts; once the share is reviewed, the new items route like the rest."""
    from tests.support.factories import corpus

    first = make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    rate = state["cohorts"]["import"]["marks"]["rate"]
    assert rate == pytest.approx(35 / 120, abs=1e-6)
    assert state["cohorts"]["import"]["marks"]["upto"] == first[-1].pk
    older_auto = set(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).values_list("pk", flat=True))
    assert older_auto

    second = [make_item(project, f"{text} imported again", status=Status.PROPOSED, proposed=(gold,),
                        extra={"gold": gold}) for text, gold in corpus(40)]
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    mine = Item.objects.filter(pk__in=[i.pk for i in second])
    share = mine.filter(is_calibration=True)
    assert share.count() in (23, 24)  # 80 x 35/120 = 23.3, rounded at random
    assert set(share.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}
    assert not mine.filter(status=Status.AUTO_ACCEPTED).exists()
    size = 35 + share.count()
    assert {i.route_reason for i in mine.filter(is_calibration=False)} == {
        f"waiting: nothing is auto-accepted until the calibration sample is reviewed (35 of {size} done)"}
    # The older items of the cohort route as before: their auto-accepts stay.
    assert older_auto <= set(Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED)
                             .values_list("pk", flat=True))
    cohort = state["cohorts"]["import"]
    assert cohort["topping_up"] and cohort["marks"] == {"rate": rate, "drawn_upto": second[-1].pk,
                                                        "upto": first[-1].pk}
    assert state["phase"] == "not_yet"  # not "calibrating": the older items are calibrated
    assert (f"Items added since calibrating wait for their share of the calibration sample: imported labels: 35 of "
            f"{size} reviewed.") in routing_sentences(state).headline

    # The next round draws nothing more for the same items.
    selection_run_round(project=project)
    assert Item.objects.filter(project=project, is_calibration=True).count() == size

    review_with_gold(project, annotator, share)
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert not state["cohorts"]["import"]["topping_up"]
    assert state["cohorts"]["import"]["marks"]["upto"] == second[-1].pk
    assert mine.filter(status=Status.AUTO_ACCEPTED).exists()
    assert not mine.filter(status=Status.PROPOSED).exists()


def test_a_project_routed_before_the_marks_existed_keeps_calibrating_then_starts_them(project, annotator):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    flagged = calibration_items(project)
    state = Project.objects.get(pk=project.pk).routing_state
    for cohort in state["cohorts"].values():
        del cohort["marks"], cohort["topping_up"]  # the state as an older version wrote it
    Project.objects.filter(pk=project.pk).update(routing_state=state)
    review_with_gold(project, annotator, flagged[:-1])
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["phase"] == "calibrating" and state["cohorts"]["import"]["marks"]["upto"] is None
    assert not Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()
    review_with_gold(project, annotator, flagged[-1:])
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["cohorts"]["import"]["marks"]["upto"] == Item.objects.filter(project=project).latest("id").pk
    assert Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()


def test_a_job_whose_labels_fail_calibration_is_never_auto_accepted_while_others_are(project, annotator):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    bad = job_pool(project, 9, wrong_every=2)  # half of this job's labels are wrong
    selection_run_round(project=project)
    sample = Item.objects.filter(pk__in=[i.pk for i in bad], is_calibration=True)
    review_with_gold(project, annotator, sample)
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["cohorts"]["job:9"]["unreliable"] and not state["cohorts"]["import"]["unreliable"]
    assert state["phase"] in ("not_yet", "reached")
    assert not Item.objects.filter(generation_job_id=9, status=Status.AUTO_ACCEPTED).exists()
    assert Item.objects.filter(project=project, generation_job_id=None, status=Status.AUTO_ACCEPTED).exists()
    sentences = routing_sentences(state)
    assert sentences.unreliable and "Unreliable, so never auto-accepted: job #9 (right on" in sentences.headline


def test_a_rejected_calibration_item_counts_as_an_error(project, annotator):
    items = job_pool(project, 5)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    sample = list(Item.objects.filter(pk__in=[i.pk for i in items], is_calibration=True))
    for item in sample:  # word salad: people reject every one, whatever its label
        queue.item_review(project=project, item_id=item.pk, user=annotator, action="reject",
                          expected_version=item.version, reason="low_quality")
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["cohorts"]["job:5"]["right"] == 0 and state["phase"] == "unreliable"
    assert not Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()


def test_the_last_calibration_review_of_one_cohort_starts_a_round_while_another_cohort_calibrates(
        project, annotator, sent, django_capture_on_commit_callbacks):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    job_items = job_pool(project, 3)
    policy(project, target_accuracy=0.9, audit_rate=0.0, retrain_every=10_000)
    selection_run_round(project=project)
    imported = list(Item.objects.filter(project=project, is_calibration=True, generation_job_id=None).order_by("id"))
    assert Item.objects.filter(pk__in=[i.pk for i in job_items], is_calibration=True).count() == 35
    with django_capture_on_commit_callbacks(execute=True):
        review_with_gold(project, annotator, imported[:-1])
    assert sent == []
    with django_capture_on_commit_callbacks(execute=True):
        review_with_gold(project, annotator, imported[-1:])
    assert sent == [((project.pk,), {"force": True})]  # job 3's sample is still open: the import cohort is done


def test_the_calibration_verdict_is_given_once_and_kept(project, annotator):
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["cohorts"]["import"]["calibration_verdict"] is False
    # A later round does not judge the same sample again: a verdict stored as given is what it keeps.
    state["cohorts"]["import"]["calibration_verdict"] = True
    Project.objects.filter(pk=project.pk).update(routing_state=state)
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["cohorts"]["import"]["unreliable"] and state["phase"] == "unreliable"
    assert not Item.objects.filter(project=project, status=Status.AUTO_ACCEPTED).exists()


def test_a_calibration_sample_short_of_strong_evidence_keeps_the_llm(project, annotator):
    # 8 of 30 calibration items wrong against the 11.4% an 88.6% target allows: the lower bound is above that at 95%
    # (0.140), not at 99.5% (0.093). A verdict given once and kept asks for 99.5%: at 95% a usable GPT-3.5 was
    # declared unreliable on one mr_gpt35 run (bench/RESULTS.md, session 12).
    make_pool(project, n_per_class=60, wrong=(), abstain=())
    policy(project, target_accuracy=0.886, audit_rate=0.0)
    selection_run_round(project=project)
    flagged = calibration_items(project)
    assert len(flagged) == 30
    for n, item in enumerate(flagged):
        gold = item.extra["gold"]
        queue.item_review(project=project, item_id=item.pk, user=annotator, action="accept",
                          expected_version=item.version, labels=[flip(gold) if n < 8 else gold])
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["calibration"] == {"size": 30, "done": 30, "right": 22, "n": 30}
    assert state["cohorts"]["import"]["calibration_verdict"] is False
    assert not state["cohorts"]["import"]["unreliable"] and state["phase"] != "unreliable"


def test_an_unreliable_llm_does_not_keep_a_fully_reviewed_dataset_from_its_certificate(project, annotator):
    items = job_pool(project, 5)
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    for item in Item.objects.filter(pk__in=[i.pk for i in items], is_calibration=True):
        queue.item_review(project=project, item_id=item.pk, user=annotator, action="reject",
                          expected_version=item.version, reason="low_quality")
    selection_run_round(project=project)
    assert Project.objects.get(pk=project.pk).routing_state["phase"] == "unreliable"
    review_with_gold(project, annotator, Item.objects.filter(project=project, status=Status.NEEDS_REVIEW))
    selection_run_round(project=project)
    state = Project.objects.get(pk=project.pk).routing_state
    assert state["cohorts"]["job:5"]["unreliable"]  # still said, on every lead page
    assert state["phase"] == "reached" and state["remaining"] == 0 and state["auto_accepted"] == 0


def test_a_round_leaves_the_callers_project_with_the_state_it_stored(project, annotator):
    make_pool(project, n_per_class=60, abstain=())
    policy(project, target_accuracy=0.9, audit_rate=0.0)
    selection_run_round(project=project)
    review_with_gold(project, annotator, calibration_items(project))
    selection_run_round(project=project)
    assert project.routing_state == Project.objects.get(pk=project.pk).routing_state
    assert project.routing_state["phase"] in ("not_yet", "reached")

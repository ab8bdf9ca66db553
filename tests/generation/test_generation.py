"""Generation and labelling jobs end to end against the loopback LLM server, through the real services."""
import json
from collections import Counter

import pytest

from annotation.models import AttributeDimension, Item, Label, Review, Source, Status
from generation import services
from generation.models import GenerationBatch, GenerationJob, JobEvent, JobMode, JobStatus, NearDuplicateKey
from tests.support.factories import make_item
from tests.support.jobs import TEXTS, start


def job_items(job):
    return list(Item.objects.filter(generation_job_id=job.id).order_by("id"))


def test_label_conditioned_job_stores_proposed_items_with_provenance(seeded, lead, llm):
    job = start(seeded, lead)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.produced, job.filtered, job.failed) == (20, 0, 0)
    items = job_items(job)
    assert len(items) == 20
    assert {i.source for i in items} == {Source.LLM} and {i.status for i in items} == {Status.PROPOSED}
    assert Counter(i.proposed_labels[0] for i in items) == {"positive": 10, "negative": 10}
    first = items[0]
    assert first.idempotency_key == f"job{job.id}:b0:0"
    assert first.provenance["job"] == job.id and first.provenance["model"] == job.model_name == "gpt-4o-mini"
    assert first.provenance["response_id"].startswith("chatcmpl-")
    assert len(first.provenance["exemplar_ids"]) == 2
    assert job.prompt_tokens > 0 and job.requests_made == 4 and job.batches_done == 2
    # Stored items are indexed for near-duplicate checks of later batches and jobs.
    assert NearDuplicateKey.objects.filter(item_id=first.id).count() == 16


def test_requests_use_json_schema_and_rotate_exemplars(seeded, lead, llm):
    start(seeded, lead, count=20, samples_per_request=5)
    requests = llm.requests
    schema = requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["samples"]["minItems"] == 5
    shown = [r["messages"][1]["content"].split("for style only:\n")[1].split("Each sample")[0] for r in requests]
    assert len(set(shown)) > 1


def test_counting_invariant_holds_with_twenty_percent_faults(seeded, lead, llm):
    llm.configure(fault_rate=0.2, fault_seed=3)
    job = start(seeded, lead, count=120, samples_per_request=3, requests_per_batch=8)
    assert job.status == JobStatus.SUCCEEDED
    assert job.produced + job.filtered + job.failed == job.requested == 120
    assert job.produced == Item.objects.filter(generation_job_id=job.id, status=Status.PROPOSED).count()
    assert job.filtered == Item.objects.filter(generation_job_id=job.id, status=Status.FILTERED).count()
    assert job.retries > 0 and job.malformed > 0
    keys = list(Item.objects.filter(generation_job_id=job.id).values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))


def test_malformed_output_is_retried_counted_and_kept_raw(seeded, lead, llm):
    llm.queue_faults("truncated_json", "wrong_schema", "wrong_schema", "wrong_schema")
    job = start(seeded, lead, count=10, samples_per_request=5, requests_per_batch=1, max_concurrency=1)
    # First request: one bad answer, then a good one. Second: three bad answers (1 + 2 retries) -> 5 failed.
    assert job.malformed == 4
    assert job.failed == 5 and job.failed_by_reason == {"malformed": 5}
    assert job.produced + job.filtered == 5
    events = JobEvent.objects.filter(job=job, kind="malformed")
    assert events.count() == 4
    assert any('"items"' in e.data["raw"] for e in events)  # wrong_schema renames samples -> items


def test_running_a_batch_twice_stores_no_duplicates(seeded, lead, llm):
    job = start(seeded, lead, count=10, requests_per_batch=1, run=False)
    assert services.job_claim(job_id=job.id, token="w1")
    provider = services.provider_for(name="openai", model="")
    first = services.job_run_batch(job=job, index=0, provider=provider)
    again = services.job_run_batch(job=job, index=0, provider=provider)
    assert first == again
    job.refresh_from_db()
    assert Item.objects.filter(generation_job_id=job.id).count() == 5
    assert job.produced + job.filtered + job.failed == 5 and job.batches_done == 1


def test_a_batch_stored_meanwhile_by_another_worker_is_not_stored_again(seeded, lead, llm, monkeypatch):
    job = start(seeded, lead, count=5, requests_per_batch=1, run=False)
    provider = services.provider_for(name="openai", model="")
    real_run = services.engine.run_generation

    def slow_run(**kwargs):
        outcomes = real_run(**kwargs)
        # Another worker stores the same batch while we were waiting for the model.
        GenerationBatch.objects.create(job=job, index=0, done=True, outcome={"produced": 99})
        return outcomes

    monkeypatch.setattr(services.engine, "run_generation", slow_run)
    assert services.job_run_batch(job=job, index=0, provider=provider) == {"produced": 99}
    assert Item.objects.filter(generation_job_id=job.id).count() == 0
    job.refresh_from_db()
    assert job.batches_done == 0


def test_a_job_is_claimed_once(seeded, lead, llm):
    job = start(seeded, lead, run=False)
    assert services.job_claim(job_id=job.id, token="a")
    assert not services.job_claim(job_id=job.id, token="b")
    assert services.job_claim(job_id=job.id, token="a")  # the same task redelivered resumes it
    assert services.job_run(job_id=job.id, token="b") is None


def test_filtered_items_are_kept_with_their_reason(seeded, lead, llm):
    llm.brain.near_duplicate_rate = 0.5
    job = start(seeded, lead, count=30, samples_per_request=5, requests_per_batch=3)
    filtered = Item.objects.filter(generation_job_id=job.id, status=Status.FILTERED)
    assert filtered.count() == job.filtered > 0
    assert set(job.filtered_by_reason) <= {"duplicate", "near_duplicate"}
    item = filtered.first()
    assert "duplicate" in item.filter_reason
    assert Review.objects.filter(item=item, action="filter").exists()


def test_self_check_relabels_with_a_rationale_and_confidence(seeded, lead, llm):
    job = start(seeded, lead, count=6, samples_per_request=3, requests_per_batch=2, steps=2)
    items = job_items(job)
    assert len(items) == 6
    for item in items:
        steps = item.provenance["steps"]
        assert steps["check_label"] == item.proposed_labels[0]
        assert steps["rationale"]
        assert 0 < item.llm_confidence <= 1
        assert sum(item.llm_votes.values()) == 2
    assert job.requests_made == 2 + 6


def test_attribute_conditioned_jobs_cover_the_cross_product_evenly(seeded, lead, llm):
    AttributeDimension.objects.create(project=seeded, name="genre", values=["comedy", "horror", "drama"])
    job = start(seeded, lead, mode=JobMode.ATTRIBUTE_CONDITIONED, count=24, samples_per_request=2,
                requests_per_batch=4, balance_project=False)
    cells = Counter((i.proposed_labels[0], i.provenance["conditions"]["attributes"]["genre"])
                    for i in job_items(job))
    assert len(cells) == 6 and set(cells.values()) == {4}
    assert any("genre = horror" in r["messages"][1]["content"] for r in llm.requests)


def test_steering_goes_to_the_under_covered_label(seeded, lead, llm):
    for n in range(10):
        make_item(seeded, f"an extra positive example number {n} for balance", status=Status.ACCEPTED,
                  proposed=(), final_labels=["positive"])
    job = start(seeded, lead, count=10, samples_per_request=2, requests_per_batch=5)
    assert Counter(i.proposed_labels[0] for i in job_items(job)) == {"negative": 10}


def test_offline_augmentation_generates_from_accepted_seeds(seeded, lead):
    job = start(seeded, lead, provider="offline", count=12, samples_per_request=2, requests_per_batch=3,
                filters={"leakage_words": 0})
    items = job_items(job)
    assert job.status == JobStatus.SUCCEEDED and job.produced + job.filtered + job.failed == 12
    assert {i.source for i in items} == {Source.AUGMENT}
    assert job.prompt_tokens == 0 and job.model_name == ""
    seeds = {t for texts in TEXTS.values() for t in texts}
    assert all(i.text not in seeds for i in items)


def test_offline_generation_without_seeds_fails_every_sample_with_a_reason(project, lead):
    job = start(project, lead, provider="offline", count=4, samples_per_request=2)
    assert job.failed == 4 and job.failed_by_reason == {"no_seeds": 4}
    # Nothing stored and every sample failed: the job failed, and says why in one sentence.
    assert job.status == JobStatus.FAILED
    assert job.outcome == ("There are no accepted seed examples of the target label to augment: 4 of 4 samples "
                           "failed.")


def pool(project, n=6):
    texts = ["A wonderful, moving film; I loved it.", "Terrible acting and a boring plot.",
             "The best concert I have seen, brilliant.", "An awful, dull evening, a waste.",
             "Superb and delightful from start to end.", "I hated it; worst meal ever."]
    return [make_item(project, texts[i % len(texts)] + f" ({i})", status=Status.NEEDS_REVIEW, proposed=())
            for i in range(n)]


def test_labelling_the_pool_uses_logprobs_for_confidence(project, lead, llm):
    items = pool(project)
    job = start(project, lead, mode=JobMode.LABEL_POOL, count=100, requests_per_batch=4)
    assert job.requested == 6 and job.produced == 6 and job.failed == 0
    for item in items:
        before_version = item.version
        item.refresh_from_db()
        assert item.status == Status.NEEDS_REVIEW  # labelling is not a status change
        assert item.proposed_labels and 0 < item.llm_confidence <= 1
        assert item.provenance["labelling"]["method"] == "logprobs"
        assert item.version == before_version + 1
    assert items[0].proposed_labels == ["positive"] and items[1].proposed_labels == ["negative"]
    assert JobEvent.objects.filter(job=job, kind="labelled").exists()


def test_labelling_without_logprobs_falls_back_to_self_consistency(project, lead, llm):
    llm.logprobs_supported = False
    items = pool(project, 3)
    job = start(project, lead, mode=JobMode.LABEL_POOL, count=100, consistency_k=5)
    assert job.produced == 3
    for item in items:
        item.refresh_from_db()
        assert item.provenance["labelling"]["method"] == "self-consistency"
        assert sum(item.llm_votes.values()) == 5
        assert item.llm_confidence == max(item.llm_votes.values()) / 5


def test_labelling_with_prompt_variants(project, lead, llm):
    llm.logprobs_supported = False
    pool(project, 2)
    job = start(project, lead, mode=JobMode.LABEL_POOL, count=100, consistency="variants", consistency_k=3)
    assert job.produced == 2
    contents = {r["messages"][1]["content"].splitlines()[0] for r in llm.requests}
    assert len(contents) == 3


def test_offline_labelling_matches_label_words(project, lead):
    Label.objects.filter(project=project, name="positive").update(label_words=["wonderful", "loved", "best"])
    Label.objects.filter(project=project, name="negative").update(label_words=["terrible", "awful", "worst"])
    items = pool(project, 6)
    job = start(project, lead, mode=JobMode.LABEL_POOL, provider="offline", count=100)
    assert job.produced + job.failed == 6
    items[0].refresh_from_db()
    assert items[0].proposed_labels == ["positive"] and items[0].provenance["labelling"]["method"] == "label words"
    assert items[0].llm_confidence == 1.0


def test_items_decided_meanwhile_are_not_relabelled(project, lead, llm):
    items = pool(project, 2)
    job = start(project, lead, mode=JobMode.LABEL_POOL, count=100, run=False)
    Item.objects.filter(pk=items[0].pk).update(status=Status.ACCEPTED, final_labels=["negative"])
    services.job_run(job_id=job.id, token="w")
    job.refresh_from_db()
    items[0].refresh_from_db()
    assert items[0].proposed_labels == [] and job.failed_by_reason == {"no_longer_pending": 1}
    assert job.produced == 1


def test_cancelling_a_queued_job_stops_it_at_once(seeded, lead):
    job = start(seeded, lead, run=False)
    services.job_cancel(job=job, user=lead)
    assert job.status == JobStatus.CANCELLED
    assert services.job_run(job_id=job.id, token="w") is None


def test_cancelling_a_running_job_stops_it_before_the_next_batch(seeded, lead, llm, monkeypatch):
    job = start(seeded, lead, count=20, samples_per_request=5, requests_per_batch=1, run=False)
    real = services._store_generation

    def cancel_after_first(**kwargs):
        outcome = real(**kwargs)
        services.job_cancel(job=kwargs["job"], user=lead)
        return outcome

    monkeypatch.setattr(services, "_store_generation", cancel_after_first)
    services.job_run(job_id=job.id, token="w")
    job.refresh_from_db()
    # The batch already sent when the cancel came still lands; nothing after it is sent.
    assert job.status == JobStatus.CANCELLED and job.batches_done == 2 and job.requests_made == 2
    assert job.produced + job.filtered + job.failed == 10


def test_a_missing_api_key_fails_the_job_with_a_clear_message(seeded, lead, settings, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.OPENAI_BASE_URL = ""
    job = start(seeded, lead)
    assert job.status == JobStatus.FAILED
    assert "OPENAI_API_KEY" in JobEvent.objects.filter(job=job, kind="failed").get().message


def test_cost_is_counted_when_a_price_is_set(seeded, lead, llm):
    job = start(seeded, lead, count=5, price_prompt_per_1k="0.5", price_completion_per_1k="1.5")
    expected = (job.prompt_tokens * 0.5 + job.completion_tokens * 1.5) / 1000
    assert float(job.cost_usd) == pytest.approx(expected)
    assert start(seeded, lead, count=5).cost_usd is None


def test_templates_are_validated_and_used(seeded, lead, llm):
    with pytest.raises(services.ServiceError, match=r"\$colour"):
        start(seeded, lead, templates={"generate": "Write $count samples, label is $label, in $colour."})
    start(seeded, lead, count=5, samples_per_request=5,
          templates={"generate": "Write $count short samples whose label is $label. Be terse."})
    assert llm.requests[-1]["messages"][1]["content"].endswith("Be terse.")


def test_preview_shows_the_exact_messages(seeded, lead, llm):
    messages = services.job_preview(project=seeded, mode=JobMode.LABEL_CONDITIONED, provider="openai",
                                    options={"count": 10, "samples_per_request": 5, "exemplars": 2})
    start(seeded, lead, count=5, samples_per_request=5, exemplars=2, requests_per_batch=1)
    assert messages == llm.requests[0]["messages"]


def test_hostile_output_is_stored_as_text(seeded, lead, llm):
    llm.queue_faults("hostile")
    job = start(seeded, lead, count=5, samples_per_request=5, requests_per_batch=1)
    texts = [i.text for i in job_items(job)]
    assert any("<script>" in t for t in texts)
    assert json.dumps(texts)  # plain strings, nothing interpreted


def test_the_demo_labels_its_pool_offline(db):
    from django.core.management import call_command

    from annotation.management.commands.demo import DEMO_PROJECT

    call_command("demo", force=True)
    job = GenerationJob.objects.get()  # the movie-review demo comes with GPT-3.5's labels: no job
    assert job.provider == "offline" and job.status == JobStatus.SUCCEEDED
    assert job.produced + job.failed == job.requested == 314
    items = Item.objects.filter(project__name=DEMO_PROJECT)
    labelled = items.exclude(llm_confidence=None)
    assert labelled.count() == job.produced >= 50  # label words match about a quarter of the TREC questions
    # The demo's scoring round then routed every pool item; those without a label always go to people.
    assert not items.filter(status=Status.PROPOSED).exists()
    unlabelled = items.filter(proposed_labels=[], final_labels=[])
    assert unlabelled.count() == 314 - job.produced
    assert set(unlabelled.values_list("status", flat=True)) == {Status.NEEDS_REVIEW}

"""Train on synthetic, test on real: gold files are validated row by row, runs are claimed once, the three training
sets are the ones the dashboard names, and the upload page works with and without HTMX."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.dashboard import evaluation
from annotation.dashboard import services as dashboard
from annotation.items import services
from annotation.models import EvaluationRun, Item, ReviewAction, Source, Status
from tests.support.factories import make_item, make_project
from tests.support.runtime import wait_for

POSITIVE = ["great wonderful film", "loved it, superb acting", "a delight, great fun", "wonderful and moving"]
NEGATIVE = ["awful boring film", "hated it, terrible acting", "a mess, dull and slow", "terrible and tedious"]
GOLD_CSV = "text,label\n" + "".join(f"{t},positive\n" for t in ["great superb film", "wonderful fun"]) + "".join(
    f"{t},negative\n" for t in ["boring terrible film", "dull awful mess"])


def gold_rows():
    return evaluation.gold_parse(data=GOLD_CSV.encode(), file_name="gold.csv", labels=["positive", "negative"])


def test_gold_csv_and_jsonl_are_read():
    assert gold_rows()[0] == ["great superb film", "positive"]
    jsonl = "\n".join(json.dumps({"text": t, "label": l}) for t, l in gold_rows()) + "\n\n"
    assert evaluation.gold_parse(data=jsonl.encode(), file_name="g.JSONL", labels=["positive", "negative"]) == \
        gold_rows()


@pytest.mark.parametrize("name,content,message", [
    ("g.csv", "body,label\nx,positive\n", "Row 1: the header has no text column"),
    ("g.csv", "text,label\nfine,positive\n,negative\n", "Row 3: 'text' is empty"),
    ("g.csv", "text,label\nfine,positive\nbad,neutral\n", "Row 3: 'label' is 'neutral'"),
    ("g.jsonl", '{"text": "a", "label": "positive"}\n{"text": \n', "Row 2: not valid JSON"),
    ("g.jsonl", '["a", "positive"]\n', "Row 1: expected an object"),
    ("g.csv", "text,label\na,positive\nb,positive\n", "at least two labels"),
    ("g.txt", "text,label\n", "Upload a .csv or .jsonl file"),
    ("g.csv", b"text,label\n\xff\xfe,positive\n", "not UTF-8"),
])
def test_bad_gold_files_are_refused_naming_row_and_field(name, content, message):
    data = content if isinstance(content, bytes) else content.encode()
    with pytest.raises(evaluation.GoldError, match=message):
        evaluation.gold_parse(data=data, file_name=name, labels=["positive", "negative"])


@pytest.fixture
def trained_project(project, annotator):
    """Curated: 4 accepted by people + 4 auto-accepted; the LLM mislabels the auto-accepted negatives."""
    for text in POSITIVE[:2]:
        services.item_transition(item=make_item(project, text, proposed=("positive",)), to=Status.ACCEPTED,
                                 action=ReviewAction.ACCEPT, user=annotator, final_labels=["positive"])
    for text in NEGATIVE[:2]:
        services.item_transition(item=make_item(project, text, proposed=("positive",)), to=Status.ACCEPTED,
                                 action=ReviewAction.EDIT, user=annotator, final_labels=["negative"])
    for text in POSITIVE[2:]:
        make_item(project, text, status=Status.AUTO_ACCEPTED, proposed=("positive",))
    for text in NEGATIVE[2:]:
        make_item(project, text, status=Status.AUTO_ACCEPTED, proposed=("negative",))
    make_item(project, "filtered junk", status=Status.FILTERED, proposed=("negative",))
    make_item(project, "seed", status=Status.ACCEPTED, source=Source.IMPORTED, proposed=(), final_labels=["positive"])
    return project


def test_training_sets_are_the_curated_llm_and_human_views(trained_project):
    def names(set_name):
        return set(evaluation.training_set(project=trained_project, name=set_name).values_list("text", flat=True))

    assert names("curated") == set(POSITIVE + NEGATIVE) | {"seed"}
    assert names("llm") == set(POSITIVE + NEGATIVE)
    assert names("human") == set(POSITIVE[:2] + NEGATIVE[:2])
    texts, labels = evaluation._examples(evaluation.training_set(project=trained_project, name="llm"), name="llm",
                                         seed=1)
    assert dict(zip(texts, labels))[NEGATIVE[0]] == "positive"  # the LLM's label, not the person's


def test_a_run_scores_each_training_set_and_is_claimed_once(trained_project, lead):
    run = EvaluationRun.objects.create(project=trained_project, created_by=lead, file_name="gold.csv",
                                       gold=gold_rows(), gold_size=4)
    assert evaluation.evaluation_run(run_id=run.pk) == "done"
    assert evaluation.evaluation_run(run_id=run.pk) == "already claimed"
    run.refresh_from_db()
    assert run.state == "done" and run.progress == 100
    assert set(run.results) == {"curated", "llm", "human"}
    assert run.results["curated"]["n_train"] == 9
    assert run.results["human"]["n_train"] == 4
    for scores in run.results.values():
        assert 0.0 <= scores["accuracy"] <= 1.0 and 0.0 <= scores["macro_f1"] <= 1.0
    # on words this separable, the curated set gets every gold row right
    assert run.results["curated"]["accuracy"] == 1.0


def test_a_training_set_with_one_label_is_skipped_with_the_reason(project, lead, annotator):
    services.item_transition(item=make_item(project, "only positive"), to=Status.ACCEPTED, action=ReviewAction.ACCEPT,
                             user=annotator, final_labels=["positive"])
    run = EvaluationRun.objects.create(project=project, created_by=lead, file_name="g.csv", gold=gold_rows())
    evaluation.evaluation_run(run_id=run.pk)
    run.refresh_from_db()
    assert run.results["human"] == {"n_train": 1, "skipped": "needs examples of at least two labels"}


def test_a_failing_run_records_the_error(trained_project, lead, monkeypatch):
    monkeypatch.setattr(evaluation, "score", lambda **kw: 1 / 0)
    run = EvaluationRun.objects.create(project=trained_project, created_by=lead, file_name="g.csv", gold=gold_rows())
    with pytest.raises(ZeroDivisionError):
        evaluation.evaluation_run(run_id=run.pk)
    run.refresh_from_db()
    assert run.state == "failed" and "ZeroDivisionError" in run.error


def test_multi_label_projects_are_refused(lead):
    project = make_project(lead=lead, multi_label=True)
    with pytest.raises(evaluation.GoldError, match="single-label"):
        evaluation.evaluation_create(project=project, user=lead, file_name="g.csv", data=GOLD_CSV.encode())


def _upload(name="gold.csv", content=GOLD_CSV):
    return {"file": SimpleUploadedFile(name, content.encode(), content_type="text/csv")}


def test_upload_without_htmx_queues_a_run_and_redirects(client, project, lead, django_capture_on_commit_callbacks,
                                                        monkeypatch):
    sent = []
    monkeypatch.setattr("annotation.dashboard.tasks.evaluation_run.delay", sent.append)
    client.force_login(lead)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("evaluation_create", args=[project.pk]), _upload())
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard", args=[project.pk]) + "#evaluation"
    run = EvaluationRun.objects.get(project=project)
    assert (run.gold_size, run.state, sent) == (4, "queued", [run.pk])


def test_upload_with_htmx_redirects_the_client(client, project, lead, monkeypatch):
    monkeypatch.setattr("annotation.dashboard.tasks.evaluation_run.delay", lambda pk: None)
    client.force_login(lead)
    response = client.post(reverse("evaluation_create", args=[project.pk]), _upload(), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("dashboard", args=[project.pk]) + "#evaluation"


def test_a_bad_upload_shows_the_row_error_with_and_without_htmx(client, project, lead, monkeypatch):
    monkeypatch.setattr("annotation.dashboard.tasks.dashboard_refresh.delay_on_commit", lambda pk: None)
    client.force_login(lead)
    url = reverse("evaluation_create", args=[project.pk])
    bad = "text,label\nfine,positive\nbad,<b>neutral</b>\n"
    response = client.post(url, _upload(content=bad))
    body = response.content.decode()
    assert response.status_code == 400 and "<html" in body
    assert "Row 3: &#x27;label&#x27; is &#x27;&lt;b&gt;neutral&lt;/b&gt;&#x27;" in body
    response = client.post(url, _upload(content=bad), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<form id="gold-form"')
    assert "Row 3:" in body
    assert not EvaluationRun.objects.exists()


def test_runs_show_progress_then_scores_on_the_dashboard(client, trained_project, lead):
    run = EvaluationRun.objects.create(project=trained_project, created_by=lead, file_name="gold.csv",
                                       gold=gold_rows(), gold_size=4, state="running", progress=33,
                                       step="Training on: LLM labels alone")
    dashboard.dashboard_compute(project_id=trained_project.pk)
    client.force_login(lead)
    body = client.get(reverse("dashboard", args=[trained_project.pk]), headers={"HX-Request": "true"}).content.decode()
    assert '<progress max="100" value="33"' in body and "every 3s" in body
    EvaluationRun.objects.filter(pk=run.pk).update(state="queued")
    evaluation.evaluation_run(run_id=run.pk)
    body = client.get(reverse("dashboard", args=[trained_project.pk]), headers={"HX-Request": "true"}).content.decode()
    assert "every 3s" not in body
    assert "curated · accuracy" in body and "Human-reviewed items alone" in body


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_computes_the_dashboard_and_an_evaluation(celery_worker_process, trained_project, lead):
    assert dashboard.dashboard_refresh_request(project=trained_project)
    run = evaluation.evaluation_create(project=trained_project, user=lead, file_name="gold.csv",
                                       data=GOLD_CSV.encode())

    def finished():
        run.refresh_from_db()
        refreshed = not trained_project.dashboard_snapshots.filter(pending_since__isnull=False).exists()
        return refreshed and run.state in ("done", "failed")

    wait_for(finished, what="the dashboard refresh and the evaluation", interval=0.5)
    assert run.state == "done", run.error
    overview = trained_project.dashboard_snapshots.get(kind="overview")
    assert overview.data["status_counts"]["auto_accepted"] == 4
    assert Item.objects.filter(project=trained_project).count() == 10

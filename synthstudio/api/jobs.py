"""Generation and labelling jobs: start one with every option of the start form (checked by that form, so against the
same bounds, mode rules and connection probe), watch its progress, cancel it, read its outcomes."""
from ninja import Router, Status
from ninja.errors import HttpError

from annotation.projects.selectors import project_label_names
from generation import selectors, services
from generation.forms import JobStartForm, job_form_data
from synthstudio.api.auth import RateLimit
from synthstudio.api.common import LEAD, access
from synthstudio.api.schemas import ErrorOut, JobCreate, JobOut, JobOutcomes, StatusName

router = Router(tags=["jobs"])

MAX_OUTCOME_ITEMS = 200


@router.post("/projects/{project_id}/jobs", response={201: JobOut, 422: ErrorOut},
             throttle=[RateLimit("job_create")], summary="Start a generation or labelling job (queued for a worker)")
def job_create(request, project_id: int, payload: JobCreate):
    a = access(request, project_id, LEAD)
    labels = project_label_names(project=a.project)
    # No connection given: the project's default, as the start page preselects it.
    connection = (str(payload.connection_id) if payload.connection_id is not None
                  else JobStartForm(project=a.project).fields["connection"].initial)
    data = job_form_data(mode=payload.mode, provider=payload.provider, options=payload.options,
                         connection=connection, model_name=payload.model_name)
    form = JobStartForm(data, project=a.project, label_names=labels)
    if not form.is_valid():
        problems = [{"field": "" if name == "__all__" else name, "message": message}
                    for name, messages in form.errors.items() for message in messages]
        return Status(422, {"detail": "The job cannot start with these options.", "problems": problems})
    kwargs = form.job_kwargs()
    # parse_retries is an option of the typed options that the page does not show; the API passes it on.
    kwargs["options"] = kwargs["options"].model_copy(update={"parse_retries": payload.options.parse_retries})
    return Status(201, services.job_create(project=a.project, user=request.user, **kwargs))


@router.get("/projects/{project_id}/jobs", response=list[JobOut], summary="The project's jobs, newest first (100)")
def job_list(request, project_id: int):
    return selectors.jobs_for_project(project=access(request, project_id, LEAD).project)[:100]


@router.get("/projects/{project_id}/jobs/{job_id}", response=JobOut, summary="A job with its progress counters")
def job_get(request, project_id: int, job_id: int):
    return selectors.job_get(project=access(request, project_id, LEAD).project, job_id=job_id)


@router.post("/projects/{project_id}/jobs/{job_id}/cancel", response=JobOut,
             summary="Cancel: a queued job at once, a running one before its next batch")
def job_cancel(request, project_id: int, job_id: int):
    job = selectors.job_get(project=access(request, project_id, LEAD).project, job_id=job_id)
    return services.job_cancel(job=job, user=request.user)


@router.get("/projects/{project_id}/jobs/{job_id}/outcomes", response=JobOutcomes,
            summary="What the job stored (newest first; status=filtered for what the filters held back) and its log")
def job_outcomes(request, project_id: int, job_id: int, status: StatusName | None = None, limit: int = 50):
    if not 1 <= limit <= MAX_OUTCOME_ITEMS:
        raise HttpError(400, f"limit must be from 1 to {MAX_OUTCOME_ITEMS}.")
    job = selectors.job_get(project=access(request, project_id, LEAD).project, job_id=job_id)
    return {"outcome": job.outcome, "items": selectors.job_items(job=job, status=status or None, limit=limit),
            "events": selectors.job_events(job=job, limit=limit)}


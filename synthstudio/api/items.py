"""Items (browse, one with its history, bulk create), file imports and the streamed export: the selectors of
annotation.items and the import/export services of annotation.io, with the pages' forms for the pages' checks."""
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify
from ninja import File, Form, Query, Router, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile

from annotation.io import exporting, importing
from annotation.io import selectors as io_selectors
from annotation.io.forms import ExportForm, ImportForm
from annotation.items import selectors
from synthstudio.api.auth import RateLimit
from synthstudio.api.common import LEAD, access, cursor_decode, cursor_encode
from synthstudio.api.schemas import (
    BulkCreate,
    BulkOut,
    ErrorOut,
    ExportQuery,
    ImportJobOut,
    ItemDetail,
    ItemPageOut,
    SourceName,
    StatusName,
)

router = Router(tags=["items"])

MAX_PAGE = 200


@router.get("/projects/{project_id}/items", response=ItemPageOut,
            summary="Items newest first, with the item browser's filters, paged by an opaque keyset cursor")
def item_list(request, project_id: int, status: StatusName | None = None, source: SourceName | None = None,
              label: str = "", q: str = "", round: int | None = None, cursor: str = "", limit: int = 50):
    a = access(request, project_id, LEAD)
    if not 1 <= limit <= MAX_PAGE:
        raise HttpError(400, f"limit must be from 1 to {MAX_PAGE}.")
    if len(q) > 200 or len(label) > 100:
        raise HttpError(400, "q has at most 200 characters and label at most 100.")
    if round is not None and not 0 <= round < 2**31:
        raise HttpError(400, "round is a scoring round's model version (a non-negative number).")
    page = selectors.items_browse(project=a.project, status=status or "", source=source or "", label=label, q=q,
                                  scored_round=round, page_size=limit, **cursor_decode(cursor))
    return {"items": page.items, "next_cursor": cursor_encode("after", page.older),
            "prev_cursor": cursor_encode("before", page.newer)}


# Before the item route, whose {item_id} would otherwise take "bulk" (then 405).
@router.post("/projects/{project_id}/items/bulk", response={201: BulkOut, 422: ErrorOut},
             summary="Create up to 10,000 items with the import's checks and duplicate rules, all or nothing")
def item_bulk_create(request, project_id: int, payload: BulkCreate):
    a = access(request, project_id, LEAD)
    options = importing.ImportOptions(format="jsonl", text_column="text", label_column="labels",
                                      llm_label_column="llm_labels", llm_confidence_column="llm_confidence",
                                      duplicates=payload.duplicates)
    records = [{**row.extra, "text": row.text, "labels": row.labels, "llm_labels": row.llm_labels,
                "llm_confidence": row.llm_confidence} for row in payload.items]
    result = importing.items_bulk_create(project=a.project, records=records, options=options)
    if result.errors:
        return Status(422, {"detail": "Nothing was created: fix these items and send the list again.",
                     "errors": result.errors})
    return Status(201, {"created": result.created, "duplicates": result.duplicates,
                        "duplicate_rows": result.duplicate_rows})


@router.get("/projects/{project_id}/items/{item_id}", response=ItemDetail, summary="One item with its review history")
def item_get(request, project_id: int, item_id: int):
    item = selectors.item_get(project=access(request, project_id, LEAD).project, item_id=item_id)
    item.history = list(selectors.item_history(item=item))
    return item


@router.post("/projects/{project_id}/imports", response={202: ImportJobOut}, tags=["imports"],
             summary="Upload a CSV or JSONL file; it is validated and imported by a worker (poll the job)")
def import_create(request, project_id: int, file: File[UploadedFile], text_column: Form[str] = "text",
                  label_column: Form[str] = "", llm_label_column: Form[str] = "",
                  llm_confidence_column: Form[str] = "", duplicates: Form[str] = "skip"):
    a = access(request, project_id, LEAD)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        raise HttpError(400, " ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
    data = form.cleaned_data
    options = importing.ImportOptions(
        format=importing.format_for(data["file"].name), text_column=data["text_column"].strip(),
        label_column=data["label_column"].strip(), llm_label_column=data["llm_label_column"].strip(),
        llm_confidence_column=data["llm_confidence_column"].strip(), duplicates=data["duplicates"],
    )
    job = importing.import_job_create(project=a.project, user=request.user, file_name=data["file"].name,
                                      options=options, upload=data["file"])
    return Status(202, job)


@router.get("/projects/{project_id}/imports/{job_id}", response=ImportJobOut, tags=["imports"])
def import_get(request, project_id: int, job_id: int):
    a = access(request, project_id, LEAD)
    importing.import_jobs_reap(project=a.project)
    return io_selectors.import_job_get(project=a.project, job_id=job_id)


EXPORT_RESPONSES = {200: {"description": "The items, streamed (CSV with a header row, or JSONL).",
                          "content": {spec.content_type.split(";")[0]: {"schema": {"type": "string"}}
                                      for spec in exporting.EXPORT_FORMATS.values()}}}


@router.get("/projects/{project_id}/export", tags=["export"], response={400: ErrorOut},
            throttle=[RateLimit("export")], openapi_extra={"responses": EXPORT_RESPONSES},
            summary="Stream the dataset with the export page's filters and formats")
def export(request, project_id: int, filters: Query[ExportQuery]):
    a = access(request, project_id, LEAD)
    params = request.GET.copy()
    params.setdefault("format", "csv")
    form = ExportForm(params, project=a.project)
    if not form.is_valid():
        problems = [{"field": name, "message": error["message"]}
                    for name, errors in form.errors.get_json_data().items() for error in errors]
        return Status(400, {"detail": "Bad export filters.", "problems": problems})
    spec = exporting.EXPORT_FORMATS[form.cleaned_data["format"]]
    stream = exporting.export_stream(project=a.project, fmt=spec.name, filters=form.export_filters(),
                                     provenance=form.cleaned_data["provenance"])
    response = StreamingHttpResponse(stream, content_type=spec.content_type)
    name = f"{slugify(a.project.name) or 'project'}-{timezone.now():%Y%m%d-%H%M}.{spec.extension}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


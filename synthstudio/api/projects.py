"""Projects, members, labels and attribute dimensions: the services of annotation.projects, as the set-up pages use
them."""
from ninja import Router, Status

from annotation.errors import ServiceError
from annotation.projects import schema, selectors, services
from synthstudio.api.common import LEAD, access
from synthstudio.api.schemas import (
    DimensionIn,
    DimensionOut,
    LabelIn,
    LabelOut,
    MemberAdd,
    MemberOut,
    MemberRole,
    MergeResult,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
)

router = Router(tags=["projects"])


def _project_out(project, role):
    project.role = role  # ProjectOut.role: the caller's role, beside the project's own fields
    return project


@router.get("/projects", response=list[ProjectOut], summary="Your projects")
def project_list(request):
    projects = list(selectors.projects_for_user(user=request.user))
    roles = selectors.project_roles(user=request.user, projects=projects)
    return [_project_out(p, "lead" if request.user.is_superuser else roles.get(p.id)) for p in projects]


@router.post("/projects", response={201: ProjectOut}, summary="Create a project (you become its lead)")
def project_create(request, payload: ProjectCreate):
    project = services.project_create(lead=request.user, **payload.dict())
    return Status(201, _project_out(project, "lead"))


@router.get("/projects/{project_id}", response=ProjectOut)
def project_get(request, project_id: int):
    a = access(request, project_id)
    return _project_out(a.project, a.role)


@router.patch("/projects/{project_id}", response=ProjectOut, summary="Change settings and review policy")
def project_update(request, project_id: int, payload: ProjectUpdate):
    a = access(request, project_id, LEAD)
    fields = payload.dict(exclude_unset=True)
    if fields.get("review_cap") == 0:
        fields["review_cap"] = None
    fields = {k: v for k, v in fields.items() if v is not None or k == "review_cap"}
    schema.project_update(project=a.project, **fields)
    return _project_out(a.project, a.role)


# --- Members ----------------------------------------------------------------------------------------------------------

@router.get("/projects/{project_id}/members", response=list[MemberOut], tags=["members"])
def member_list(request, project_id: int):
    return selectors.project_members(project=access(request, project_id, LEAD).project)


@router.post("/projects/{project_id}/members", response={201: MemberOut}, tags=["members"],
             summary="Add a member by username or e-mail (or change the role of one already in)")
def member_add(request, project_id: int, payload: MemberAdd):
    a = access(request, project_id, LEAD)
    membership = services.membership_add(project=a.project, identifier=payload.identifier, role=payload.role)
    return Status(201, selectors.project_membership_get(project=a.project, membership_id=membership.pk))


@router.patch("/projects/{project_id}/members/{membership_id}", response=MemberOut, tags=["members"])
def member_set_role(request, project_id: int, membership_id: int, payload: MemberRole):
    a = access(request, project_id, LEAD)
    membership = selectors.project_membership_get(project=a.project, membership_id=membership_id)
    return services.membership_set_role(membership=membership, role=payload.role)


@router.delete("/projects/{project_id}/members/{membership_id}", response={204: None}, tags=["members"])
def member_remove(request, project_id: int, membership_id: int):
    a = access(request, project_id, LEAD)
    services.membership_remove(membership=selectors.project_membership_get(project=a.project,
                                                                           membership_id=membership_id))
    return Status(204, None)


# --- Labels -----------------------------------------------------------------------------------------------------------

@router.get("/projects/{project_id}/labels", response=list[LabelOut], tags=["labels"],
            summary="The label schema (members: the queue shows it too)")
def label_list(request, project_id: int):
    return selectors.project_labels(project=access(request, project_id).project)


@router.post("/projects/{project_id}/labels", response={201: LabelOut}, tags=["labels"])
def label_create(request, project_id: int, payload: LabelIn):
    project = access(request, project_id, LEAD).project
    return Status(201, schema.label_create(project=project, **payload.dict()))


@router.put("/projects/{project_id}/labels/{label_id}", response=LabelOut, tags=["labels"],
            summary="Change a label; a new name is written into every item that carries the old one")
def label_update(request, project_id: int, label_id: int, payload: LabelIn):
    a = access(request, project_id, LEAD)
    label = selectors.project_label_get(project=a.project, label_id=label_id)
    return schema.label_update(label=label, user=request.user, **payload.dict())


@router.delete("/projects/{project_id}/labels/{label_id}", response=MergeResult, tags=["labels"],
               summary="Delete an unused label, or merge it into another (merge_into: that label's id)")
def label_delete(request, project_id: int, label_id: int, merge_into: int | None = None):
    a = access(request, project_id, LEAD)
    label = selectors.project_label_get(project=a.project, label_id=label_id)
    if merge_into is None:
        schema.label_delete(label=label)
        return {"merged_into": None, "relabelled": 0}
    if merge_into == label_id:
        raise ServiceError("Merge a label into another label of the same project.")
    into = selectors.project_label_get(project=a.project, label_id=merge_into)
    return {"merged_into": into.name, "relabelled": schema.label_merge(label=label, into=into, user=request.user)}


# --- Attribute dimensions ---------------------------------------------------------------------------------------------

@router.get("/projects/{project_id}/attributes", response=list[DimensionOut], tags=["attributes"])
def attribute_list(request, project_id: int):
    return selectors.project_dimensions(project=access(request, project_id, LEAD).project)


@router.post("/projects/{project_id}/attributes", response={201: DimensionOut}, tags=["attributes"])
def attribute_create(request, project_id: int, payload: DimensionIn):
    project = access(request, project_id, LEAD).project
    return Status(201, schema.attribute_create(project=project, **payload.dict()))


@router.put("/projects/{project_id}/attributes/{dimension_id}", response=DimensionOut, tags=["attributes"])
def attribute_update(request, project_id: int, dimension_id: int, payload: DimensionIn):
    a = access(request, project_id, LEAD)
    dimension = selectors.project_dimension_get(project=a.project, dimension_id=dimension_id)
    return schema.attribute_update(dimension=dimension, **payload.dict())


@router.delete("/projects/{project_id}/attributes/{dimension_id}", response={204: None}, tags=["attributes"])
def attribute_delete(request, project_id: int, dimension_id: int):
    a = access(request, project_id, LEAD)
    schema.attribute_delete(dimension=selectors.project_dimension_get(project=a.project, dimension_id=dimension_id))
    return Status(204, None)


"""What every API function shares: the caller's access to a project (through ``annotation.permissions``) and the
opaque keyset cursor of item pages."""
import base64
import binascii
import json

from ninja.errors import HttpError

from annotation.permissions import LEAD, MEMBER, ProjectAccess, project_access

__all__ = ["LEAD", "MEMBER", "access", "cursor_decode", "cursor_encode"]


def access(request, project_id: int, need: str = MEMBER) -> ProjectAccess:
    """The project and the caller's role; 404 for a project the caller is not in, 403 for an annotator on a lead
    call."""
    return project_access(user=request.user, project_id=project_id, need=need)


def cursor_encode(direction: str, item_id: int | None) -> str | None:
    if item_id is None:
        return None
    raw = json.dumps({direction: item_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> dict[str, int]:
    """``{"after": id}`` or ``{"before": id}``; 400 for anything this API did not hand out."""
    if not cursor:
        return {}
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = None
    if (not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("after", "before")
            or type(next(iter(value.values()))) is not int or not 0 <= next(iter(value.values())) < 2**63):
        raise HttpError(400, "The cursor is not one this API returned; pass next_cursor or prev_cursor as given.")
    return value

"""Request bodies and parameters as values the database can store: a NUL character (which PostgreSQL can store
neither in text nor in JSON) or a lone UTF-16 surrogate (JSON's ``\\ud800`` escapes; not encodable as UTF-8) anywhere,
keys included, is refused with 422 naming where, before any service sees it. The pages get the same from Django's form
fields (``ProhibitNullCharactersValidator``; browsers cannot send lone surrogates)."""
import re

from ninja import Schema
from ninja.errors import HttpError
from ninja.parser import Parser
from pydantic import model_validator

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _where_unstorable(value, path: str = "") -> str | None:
    """The path of the first string holding a NUL or a lone surrogate, or None. A loop, not recursion: JSON may nest
    as deep as the parser went."""
    stack = [(value, path or "body")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    return f"{path} (a key)"
                stack.append((item, f"{path}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


def _refuse(where: str):
    raise HttpError(422, f"{where} contains a NUL character or a lone surrogate (\\u0000, \\ud800-\\udfff), which "
                         "cannot be stored; remove it and send the request again.")


class StorableParser(Parser):
    """Query strings and form fields (bodies: ``StorableInput``, whose refusal ninja reports as a 422 like any other
    invalid field, where a parser's would become a bare 400)."""

    def parse_querydict(self, data, list_fields, request):
        parsed = super().parse_querydict(data, list_fields, request)
        where = _where_unstorable(parsed, "parameters")
        if where:
            _refuse(where)
        return parsed


class StorableInput(Schema):
    """The base of every request body."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data):
        # ninja hands a schema's validators its input wrapped (DjangoGetter); the request's values are inside.
        where = _where_unstorable(getattr(data, "_obj", data))
        if where:
            raise ValueError(f"{where} contains a NUL character or a lone surrogate, which cannot be stored")
        return data

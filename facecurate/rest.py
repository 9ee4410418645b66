"""REST framework pieces shared by every API view: capped pagination and a bounded JSON parser."""
from __future__ import annotations

import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.parsers import JSONParser


def _checked(request, name: str, minimum: int) -> None:
    """A ``?name=`` that is there but not an integer >= ``minimum`` is a 400, never silently the default."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return
    try:
        ok = int(raw) >= minimum
    except ValueError:
        ok = False
    if not ok:
        raise ValidationError({name: [f"{name} must be an integer of at least {minimum}, not {raw[:20]!r}"]})


class CappedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=`` pages; a limit above FACECURATE_MAX_PAGE_SIZE (500) is cut down to it; a limit
    below 1 or a negative offset is refused (400)."""

    @property
    def max_limit(self) -> int:  # read per request so tests and settings changes apply
        return settings.MAX_PAGE_SIZE

    def get_limit(self, request):
        _checked(request, self.limit_query_param, 1)
        return super().get_limit(request)

    def get_offset(self, request):
        _checked(request, self.offset_query_param, 0)
        return super().get_offset(request)


class IdCursorPagination(CursorPagination):
    """Keyset pages by id for lists that grow with the data (images, faces): ``?limit=`` (capped) and
    ``?cursor=`` from ``next``; no COUNT over the whole list, so a page costs the same at any size."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "limit"

    @property
    def max_page_size(self) -> int:
        return settings.MAX_PAGE_SIZE

    def get_page_size(self, request):
        _checked(request, self.page_size_query_param, 1)
        return super().get_page_size(request)


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes, limit: int) -> int:
    """Deepest nesting of ``raw`` (JSON text), counting only up to ``limit + 1``; strings skipped."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a nesting limit (MAX_JSON_DEPTH: 400), so a hostile body gets a short
    JSON error instead of a RecursionError. (Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE
    before this runs; facecurate.errors answers that with 413.)"""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            raise ParseError("JSON parse error - empty body", code="parse_error")
        raw = stream.read()
        max_depth = settings.MAX_JSON_DEPTH
        if json_depth(raw, max_depth) > max_depth:
            raise ParseError(f"JSON is nested deeper than {max_depth} levels", code="too_deep")
        try:
            return json.loads(raw.decode((parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET),
                              parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}", code="parse_error") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")

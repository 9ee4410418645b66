"""Every error answers briefly: JSON ``{"detail", "code"}`` under /api/, a short HTML page elsewhere.

* ``api_exception_handler`` (DRF's EXCEPTION_HANDLER): every DRF error gets ``detail`` (one line for
  people) and ``code`` (stable, for programs); validation errors keep their per-field messages too.
* ``handler400/403/404/500`` (Django's, set in urls.py) and ``csrf_failure``: what Django answers
  outside DRF (unknown URLs, bad Host header, uncaught exceptions), never a debug page or URL list.
"""
from __future__ import annotations

from html import escape

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpResponse, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _first_message(detail) -> tuple[str, str]:
    """(message, code) of the first error inside a DRF error structure, prefixed by its field."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            message, code = _first_message(value)
            return (message if field == "non_field_errors" else f"{field}: {message}"), code
    elif isinstance(detail, list):
        for value in detail:
            return _first_message(value)
    else:
        return str(detail), getattr(detail, "code", None) or "invalid"
    return "Invalid input.", "invalid"


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    elif isinstance(exc, RequestDataTooBig):
        return Response({"detail": "request body is larger than the server accepts", "code": "request_too_large"},
                        status=413)
    elif isinstance(exc, SuspiciousOperation):  # too many fields or files, and the like
        return Response({"detail": str(exc) or "bad request", "code": "bad_request"}, status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not a DRF error: Django's handler500 answers (JSON under /api/)
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        message, code = _first_message(exc.detail)
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("detail", message)
            data.setdefault("code", code)
        else:
            data = {"detail": message, "code": code, "errors": data}
    else:
        detail = getattr(exc, "detail", None)
        message, code = _first_message(detail) if detail is not None else (str(exc), "error")
        if isinstance(exc, exceptions.APIException) and not isinstance(detail, (dict, list)):
            code = getattr(detail, "code", None) or exc.default_code
        data = {"detail": message, "code": code}
    response.data = data
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _page(status: int, title: str, text: str) -> HttpResponse:
    body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)} · facecurate"
            f"</title></head><body><h1>{escape(title)}</h1><p>{escape(text)}</p>"
            f"<p><a href=\"/\">facecurate</a></p></body></html>")
    return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")


def _answer(request, status: int, code: str, message: str, title: str) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": message, "code": code}, status=status)
    return _page(status, title, message)


def handler400(request, exception=None):
    from django.core.exceptions import DisallowedHost

    if isinstance(exception, DisallowedHost):
        return _answer(request, 400, "bad_host", "The Host header names a host this server does not serve.",
                       "Bad request")
    return _answer(request, 400, "bad_request", "The request could not be understood.", "Bad request")


def handler403(request, exception=None):
    return _answer(request, 403, "permission_denied", "You do not have permission to do this.", "Forbidden")


def handler404(request, exception=None):
    return _answer(request, 404, "not_found", "Nothing is here.", "Not found")


def handler500(request):
    return _answer(request, 500, "server_error", "The server failed; the error is in its log.", "Server error")


def csrf_failure(request, reason: str = ""):
    return _answer(request, 403, "csrf_failed", "CSRF check failed; reload the page and try again.", "Forbidden")

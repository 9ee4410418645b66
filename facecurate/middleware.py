"""Reject oversized request bodies before Django reads them."""
from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


class RequestSizeLimitMiddleware:
    """413 with a JSON error when Content-Length exceeds FACECURATE_MAX_UPLOAD_MB."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return JsonResponse({"detail": f"bad Content-Length {length!r}", "code": "bad_request"}, status=400)
        limit = settings.MAX_UPLOAD_BYTES
        if size > limit:
            # Drain nothing: the connection is closed by the server after the response.
            return JsonResponse(
                {
                    "detail": f"request body of {size} bytes exceeds the limit of {limit} bytes "
                    f"(FACECURATE_MAX_UPLOAD_MB={settings.MAX_UPLOAD_MB})",
                    "code": "request_too_large",
                },
                status=413,
            )
        return self.get_response(request)

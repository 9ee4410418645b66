"""Sign-in endpoints with the lockout of facecurate.accounts.lockout: the API token and the login form."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.parsers import FormParser, MultiPartParser

from facecurate.rest import BoundedJSONParser

from . import lockout


def _wait_text(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class TokenView(ObtainAuthToken):
    """POST user name and password, get the user's API token; 429 after repeated failures."""

    parser_classes = (FormParser, MultiPartParser, BoundedJSONParser)

    @extend_schema(responses={200: {"type": "object", "properties": {"token": {"type": "string"}}}},
                   summary="Get the API token of a user name and password")
    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        address = lockout.client_address(request)
        if isinstance(username, str):
            wait = lockout.retry_after(username, address)
            if wait:
                raise Throttled(wait=wait, detail=f"Too many failed sign-ins; try again in {_wait_text(wait)}.")
        response = super().post(request, *args, **kwargs)  # a failure is counted by the signal
        if isinstance(username, str):
            lockout.reset(username, address)
        return response


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class LoginView(auth_views.LoginView):
    """The browser's sign-in form; after repeated failures it answers 429 without checking the password."""

    template_name = "facecurate/login.html"

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = lockout.retry_after(username, lockout.client_address(request))
        if wait:
            form = self.get_form_class()(request)  # unbound: checks no password
            context = self.get_context_data(form=form, locked=_wait_text(wait))
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

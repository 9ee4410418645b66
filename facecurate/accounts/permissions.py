"""API permissions by role: anonymous get 401, users without a role 403."""
from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .roles import is_annotator, is_staff_role


class ReadAnnotatorWriteStaff(BasePermission):
    """Annotators (and staff) may read; only staff may change anything."""

    message = "This needs the staff role."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return is_annotator(user)
        return is_staff_role(user)


class IsStaffRole(BasePermission):
    message = "This needs the staff role."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and is_staff_role(request.user))


class IsAnnotator(BasePermission):
    message = "This needs the annotator or staff role."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and is_annotator(request.user))

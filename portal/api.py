"""The one error format of the API, and its exception handler.

Every 4xx answer has the shape::

    {"error": {"code": "invalid", "message": "…", "fields": {"lines.0.sku": ["Unknown SKU."]}}}
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal.domain import DomainError

logger = logging.getLogger(__name__)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: invalid, not_found, idempotency_key_reused …")
    message = serializers.CharField(help_text="What went wrong, for people")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Field errors by dotted path: {"lines.0.sku": ["Unknown SKU."]}',
    )


class ErrorSerializer(serializers.Serializer):
    """The one error format of the API."""

    error = ErrorDetailSerializer()


def flatten_field_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"a.0.b": ["message"]}."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                path = prefix or "non_field_errors"
            fields.update(flatten_field_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            fields[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    fields.update(flatten_field_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return fields


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_422_UNPROCESSABLE_ENTITY: "invalid",
    status.HTTP_429_TOO_MANY_REQUESTS: "rate_limited",
}


def exception_handler(exc, context):
    """Map every refused request to the one error format; log and hide anything unexpected."""
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(error_body("invalid", "The request has invalid values.", fields), status=422)
    if isinstance(exc, OperationalError):
        # The database refused for now (no free connection, a deadlock victim, a restart): the
        # transaction rolled back, so the same request may simply be sent again.
        logger.warning("API request refused: database busy or unavailable", exc_info=exc)
        response = Response(
            error_body("unavailable", "The service is busy and changed nothing; send the request again shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = "1"
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            error_body("server_error", "The request could not be completed. It changed nothing; try again."),
            status=500,
        )
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail)
        response.data = error_body("invalid", "The request has invalid values; see fields.", fields)
        response.status_code = 422
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        message = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
        code = CODES.get(response.status_code, getattr(exc, "default_code", "error"))
        response.data = error_body(code, message)
    return response


def json_error(code: str, message: str, status_code: int, fields: dict | None = None) -> JsonResponse:
    """The same error format for plain Django views (middleware, 404 handler)."""
    return JsonResponse(error_body(code, message, fields), status=status_code)

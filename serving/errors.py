"""The one mapping from exceptions to HTTP statuses and OpenAI-style error bodies.

Every error the API returns goes through `error_info`, whether raised by a route, by request validation, by the
size limit, or inside a stream (where it becomes an error event). Every error has a `code`. Errors of the backend
and the server (503, 502, 500, a parameter the backend rejected) carry internal URLs, paths and adapter names:
their details go to the log, and the client gets a fixed message for its code.
"""

from __future__ import annotations

import logging
import math

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from llmops.errors import (
    AuthenticationError,
    BackendUnavailableError,
    GenerationError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    NotReadyError,
    RateLimitedError,
    StoreUnavailableError,
)
from serving.protocol import ErrorInfo

__all__ = ["RequestTooLarge", "error_headers", "error_info"]

log = logging.getLogger("llmops.serving")

_HTTP_CODES = {
    400: "invalid_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}

# What a client is told for errors whose details are internal (the log has them).
_PUBLIC_MESSAGES = {
    "backend_unavailable": "the generation backend is unavailable; retry later",
    "not_ready": "no release is loaded yet; retry later",
    "backend_rejected": "the generation backend rejected the request's parameters; check them (the server log has "
    "the backend's answer)",
    "backend_error": "the generation backend failed to answer; retry later",
    "internal_error": "internal server error (see the server log)",
    "sessions_unavailable": "conversations and feedback are unavailable right now (the session store is off or "
    "down); requests without session_id still work",
}

_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    503: "service_unavailable_error",
}


class RequestTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(
            f"the request body is larger than {limit} bytes (serving.max_request_bytes): send a shorter request"
        )


def error_info(exc: BaseException) -> tuple[int, ErrorInfo]:
    """(HTTP status, error body) for an exception."""
    if isinstance(exc, RequestValidationError):
        return 400, _validation_info(exc)
    if isinstance(exc, InvalidRequestError):  # ContextLengthError included
        return 400, ErrorInfo(message=str(exc), type="invalid_request_error", param=exc.param,
                              code=exc.code or "invalid_value")
    if isinstance(exc, ModelNotFoundError):
        return 404, ErrorInfo(message=str(exc), type="invalid_request_error", param=exc.param, code="model_not_found")
    if isinstance(exc, NotFoundError):
        return 404, ErrorInfo(message=str(exc), type="not_found_error", param=exc.param, code=exc.code)
    if isinstance(exc, StoreUnavailableError):
        return 503, _internal(exc, "service_unavailable_error", "sessions_unavailable")
    if isinstance(exc, RequestTooLarge):
        return 413, ErrorInfo(message=str(exc), type="invalid_request_error", code="request_too_large")
    if isinstance(exc, RateLimitedError):
        return 429, ErrorInfo(message=str(exc), type="rate_limit_error", param="model", code="rate_limit_exceeded")
    if isinstance(exc, AuthenticationError):
        return 401, ErrorInfo(message=str(exc), type="authentication_error", code="invalid_token")
    if isinstance(exc, (BackendUnavailableError, NotReadyError)):
        code = "backend_unavailable" if isinstance(exc, BackendUnavailableError) else "not_ready"
        return 503, _internal(exc, "service_unavailable_error", code)
    if isinstance(exc, GenerationError):
        # The backend rejected the request: a parameter it does not accept is the client's to fix.
        # 401/403: the server's own key for the backend (an endpoint route's) is wrong, nothing the client can fix.
        if exc.status_code is not None and 400 <= exc.status_code < 500 and exc.status_code not in (401, 403):
            return 400, _internal(exc, "invalid_request_error", "backend_rejected")
        return 502, _internal(exc, "server_error", "backend_error")
    if isinstance(exc, HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return exc.status_code, ErrorInfo(
            message=message, type=_HTTP_TYPES.get(exc.status_code, "server_error"),
            code=_HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"),
        )
    log.error("unexpected error", exc_info=exc)
    return 500, ErrorInfo(message=_PUBLIC_MESSAGES["internal_error"], type="server_error", code="internal_error")


def error_headers(exc: BaseException) -> dict[str, str]:
    """Headers an error response carries besides its body: `Retry-After` (whole seconds, at least 1) on a 429."""
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return {}


def _internal(exc: BaseException, type_: str, code: str) -> ErrorInfo:
    """The client's error for a failure whose message is internal; the message itself is logged."""
    log.warning("%s: %s: %s", code, type(exc).__name__, exc)
    return ErrorInfo(message=_PUBLIC_MESSAGES[code], type=type_, code=code)


def _validation_info(exc: RequestValidationError) -> ErrorInfo:
    errors = exc.errors()
    problems, params = [], []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if err.get("type") == "json_invalid":
            return ErrorInfo(
                message=f"the request body is not valid JSON ({err.get('ctx', {}).get('error', err.get('msg'))})",
                type="invalid_request_error",
                code="invalid_json",
            )
        if err.get("type") == "missing":
            message = f"{param}: required field is missing"
        elif err.get("type") == "extra_forbidden":
            message = f"{param}: unknown field (check the spelling)"
        else:
            message = f"{param or 'body'}: {err.get('msg')}"
        problems.append(message)
        params.append(param)
    return ErrorInfo(
        message="; ".join(problems) or "invalid request",
        type="invalid_request_error",
        param=params[0] if params else None,
        code="invalid_value",
    )

"""The RAG API: a FastAPI app factory, thin routers, one error mapping, metrics and the request size limit.

    uvicorn --factory serving.app:app_from_env      # LLMOPS_SERVING_CONFIG=configs/....yaml
    llmops serve --config configs/....yaml          # also starts the vLLM server

Routes: `POST /v1/chat/completions` (OpenAI-compatible, `stream: true` for SSE), `GET /v1/models`,
`POST /v1/search`, `GET`/`DELETE /v1/sessions/{id}`, `POST /v1/feedback`, `GET /healthz` (process up), `GET /readyz` (release loaded, backend reachable), `GET /metrics`,
`POST /admin/reload` (bearer token from `serving.admin_token_env`), the web chat at `/` (`serving/web.py`). The app
keeps no state but the release, so several workers and replicas can run behind a load balancer (with
`serving.sessions.store: redis` when they share conversations). With API keys set (`serving.api_keys_env`) every
`/v1/*` route needs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.index.embedding import limit_torch_threads
from llmops.config import PipelineConfig, load_config
from llmops.errors import AuthenticationError, BackendUnavailableError, LLMOpsError, NotReadyError
from serving.audit import GuardrailAudit
from serving.auth import ApiKeyAuth, ApiKeys, request_owner
from serving.errors import RequestTooLarge, error_info
from serving.metrics import CONTENT_TYPE_LATEST, ServingMetrics
from serving.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorInfo,
    ErrorResponse,
    ModelList,
    ReloadResponse,
    SearchRequest,
    SearchResponse,
)
from serving.release import ReleaseLoader, ReleaseManager
from serving.request_log import RequestLogger
from serving.service import RagService, SSEStream
from serving.sessions.factory import open_session_store
from serving.sessions.routes import router as sessions_router
from serving.web import mount_web

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("llmops.serving")

CONFIG_ENV = "LLMOPS_SERVING_CONFIG"
BACKEND_URL_ENV = "LLMOPS_SERVING_BACKEND_URL"
BACKEND_STATE_ENV = "LLMOPS_SERVING_BACKEND_STATE"  # the supervisor's state file (serving/supervisor.py)


def create_app(
    config: PipelineConfig,
    *,
    backend_url: str | None = None,
    manager: ReleaseManager | None = None,
    metrics: ServingMetrics | None = None,
    backend_failure: Callable[[], str | None] | None = None,
) -> FastAPI:
    """The RAG API for `config` (its `serving`, `llm`, `artifacts` sections).

    `backend_url` is the vLLM server's …/v1 URL when it is not `llm.base_url` (`llmops serve` passes the one it
    started). `manager` replaces the registry-backed release manager (tests). `backend_failure` says why the backend
    `llmops serve` supervises is down for good (None while it is up or restarting): /healthz then fails.
    """
    serving = config.serving
    metrics = metrics or ServingMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal manager
        limit_torch_threads(serving.embedding_threads)
        store_kind = serving.sessions.store
        app.state.sessions = open_session_store(
            config, on_error=lambda operation: metrics.session_store_errors.labels(store_kind, operation).inc()
        )
        if manager is None:
            manager = _registry_manager(config, backend_url, metrics)
        app.state.manager = manager
        app.state.request_log = RequestLogger.open(config, manager.holder, metrics)
        app.state.service = RagService(
            manager.holder, serving, metrics, GuardrailAudit(serving.audit_log), sessions=app.state.sessions,
            request_log=app.state.request_log,
        )
        try:
            await manager.reload()  # before accepting requests: a replica joins the load balancer ready
        except Exception as e:  # noqa: BLE001 - stay up, not ready; the watcher (or /admin/reload) tries again
            log.error("no release loaded at start-up: %s", e)
        watcher = None
        if serving.watch_interval_s > 0:
            watcher = asyncio.get_running_loop().create_task(manager.watch(serving.watch_interval_s))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await manager.close()
            await app.state.sessions.close()
            await app.state.request_log.aclose()  # drains the queue: a graceful shutdown loses no record

    # No /openapi.json: the schema would list the admin routes and internals to anyone. The API is OpenAI's (plus
    # the README's extras); clients need no schema from the server.
    app = FastAPI(title="flyte-llmops RAG API", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.metrics = metrics

    # ---------------------------------------------------------------------------------------------- errors

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status, info = error_info(exc)
        return JSONResponse(ErrorResponse(error=info).model_dump(mode="json"), status_code=status)

    app.add_exception_handler(RequestValidationError, handle)
    app.add_exception_handler(LLMOpsError, handle)
    app.add_exception_handler(HTTPException, handle)
    app.add_exception_handler(Exception, handle)

    # ---------------------------------------------------------------------------------------------- routes

    def service(request: Request) -> RagService:
        return request.app.state.service

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up, and so is the backend it supervises (or its restarts have not given up)."""
        failure = backend_failure() if backend_failure is not None else None
        if failure is not None:
            log.error("unhealthy: %s", failure)
            raise BackendUnavailableError(failure)
        return {"status": "ok"}

    readiness_log = _ChangeLog()

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Ready or not, and which part is not. The reasons (URLs, paths, errors) go to the log only."""
        mgr: ReleaseManager = request.app.state.manager
        state = mgr.holder.current
        backend_ok, backend = await mgr.loader.backend_ready(serving.backend_check_timeout_s)
        ready = state is not None and backend_ok
        readiness_log.note(f"backend: {backend}; last reload error: {mgr.last_error}")
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "release": state.release_id if state else None,
            "backend": "ok" if backend_ok else "unavailable",
            "reload_failed": mgr.last_error is not None,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", response_model=ModelList)
    async def models(request: Request) -> ModelList:
        return service(request).models()

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        owner = request_owner(request.state)
        if body.stream:
            stream = await service(request).open_stream(body, owner)
            return SSEResponse(stream)
        return await service(request).chat(body, owner)

    @app.post("/v1/search", response_model=SearchResponse)
    async def search(body: SearchRequest, request: Request) -> SearchResponse:
        return await service(request).search(body)

    app.include_router(sessions_router)

    @app.post("/admin/reload", response_model=ReloadResponse, include_in_schema=False)
    async def admin_reload(request: Request):
        _check_admin(request, serving.admin_token_env)
        try:
            result = await request.app.state.manager.reload()
        except LLMOpsError as e:
            # The caller is the operator (authenticated): the reason is theirs to read, paths included.
            status, info = (503, "not_ready") if isinstance(e, NotReadyError) else (500, "reload_failed")
            body = ErrorInfo(message=str(e), type="server_error", code=info)
            return JSONResponse(ErrorResponse(error=body).model_dump(mode="json"), status_code=status)
        return ReloadResponse(changed=result.changed, release=result.release, previous=result.previous)

    mount_web(app)

    # ---------------------------------------------------------------------------------------------- middleware
    # Added last = outermost: metrics see every response, the 413s of the size limit included. The API key check
    # is innermost: CORS preflights (no key) pass, and a 401 is counted.

    app.add_middleware(ApiKeyAuth, keys=ApiKeys.from_env(serving.api_keys_env))

    if serving.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(serving.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, limit=serving.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (one per worker): config from $LLMOPS_SERVING_CONFIG."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {CONFIG_ENV} to the pipeline config file the RAG API should serve")
    from serving.supervisor import failure_reader

    state_file = os.environ.get(BACKEND_STATE_ENV)
    return create_app(
        load_config(path).resolved(),
        backend_url=os.environ.get(BACKEND_URL_ENV) or None,
        backend_failure=failure_reader(state_file) if state_file else None,
    )


def _registry_manager(config: PipelineConfig, backend_url: str | None, metrics: ServingMetrics) -> ReleaseManager:
    from llmops.release.registry import ReleaseRegistry

    def on_swap(new, old) -> None:
        metrics.set_release(new.release, old.release if old else None)
        metrics.reloads.labels("swapped").inc()

    return ReleaseManager(
        ReleaseRegistry(config.artifacts.registry_root),
        config.serving.alias,
        ReleaseLoader(config, backend_url=backend_url, observe_guardrails=metrics.observe_guardrails),
        unload_grace_s=config.serving.adapter_unload_grace_s,
        on_swap=on_swap,
        on_failure=lambda e: metrics.reloads.labels("failed").inc(),
    )


def _check_admin(request: Request, token_env: str) -> None:
    expected = os.environ.get(token_env)
    if not expected:
        raise AuthenticationError(f"admin endpoints are disabled: set {token_env} in the server's environment")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthenticationError("missing or wrong admin token (Authorization: Bearer <token>)")


class _ChangeLog:
    """Logs a readiness reason when it changes (probes ask every few seconds; the log needs each change once)."""

    def __init__(self) -> None:
        self.last: str | None = None

    def note(self, reason: str) -> None:
        if reason != self.last:
            self.last = reason
            log.info("readiness: %s", reason)


# ---------------------------------------------------------------------------------------------- responses


class SSEResponse(StreamingResponse):
    """Server-sent events from an `SSEStream`, closed (release handed back) however the response ends."""

    def __init__(self, stream: SSEStream):
        super().__init__(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy buffering of tokens
        )
        self.stream = stream

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.stream.aclose()


# ---------------------------------------------------------------------------------------------- middleware


async def _send_error(send: Send, exc: Exception) -> None:
    status, info = error_info(exc)
    response = JSONResponse(ErrorResponse(error=info).model_dump(mode="json"), status_code=status)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class BodySizeLimit:
    """413 for bodies over `limit` bytes, by Content-Length or by counting a chunked body (read before the route)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_error(send, RequestTooLarge(self.limit))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await _send_error(send, RequestTooLarge(self.limit))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # later calls wait for the disconnect, as streaming responses expect

        await self.app(scope, replay, send)


class RequestMetrics:
    """Request count by route and status, latency to the last byte (of a stream too), requests in flight."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = _route_of(scope)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    """The route's path template (bounded label values), or `unmatched`."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
    return "unmatched"

"""Routes: the models the API serves (`serving.routes`), each the `model` a client sends, mapped to what answers it.

- an alias route is served by the `ReleaseManager` of its registry alias (one manager per distinct alias, shared by
  routes on the same alias): that release's whole chain (index, prompt, chat engine, guardrails, adapter);
- an endpoint route by a manager that follows `serving.alias`'s (`serving.release.endpoint`): that release's
  retriever and prompt, generation by the route's OpenAI-compatible provider.

Each route may have a rate limit (`serving.ratelimit`) and a set of API keys allowed on it; a caller whose key may
not use a route is answered as for an unknown model (404 `model_not_found`: nothing says that the route exists).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from llmops.config import PipelineConfig, RouteConfig
from llmops.errors import ConfigError, ModelNotFoundError
from serving.auth import ANONYMOUS, ApiKeys
from serving.metrics import ServingMetrics
from serving.ratelimit import RouteRateLimiter
from serving.release import ReleaseManager, ReloadResult
from serving.release.endpoint import EndpointLoader, FollowedRelease
from serving.release.state import ReleaseHolder

__all__ = ["Route", "RouteTable", "build_route_table"]

log = logging.getLogger("llmops.serving")


@dataclass(frozen=True)
class Route:
    config: RouteConfig
    manager: ReleaseManager
    limiter: RouteRateLimiter | None = None
    allowed: frozenset[str] | None = None  # owner ids (key hashes) that may use it; None = every caller

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def holder(self) -> ReleaseHolder:
        return self.manager.holder

    @property
    def kind(self) -> str:
        return "endpoint" if self.config.endpoint is not None else "release"

    def admits(self, owner: str) -> bool:
        return self.allowed is None or owner in self.allowed


class RouteTable:
    """The routes by name, the default one (`serving.model_name`), and every manager in load order: the alias
    managers first, then the endpoint routes' followers (which take the release their alias manager loaded)."""

    def __init__(self, routes: list[Route], default: str, managers: list[ReleaseManager]):
        self.routes = {r.name: r for r in routes}
        self.default = self.routes[default]
        self.managers = managers

    def visible(self, owner: str) -> list[Route]:
        """The routes `owner` may use, the default first (the web chat takes the first model listed)."""
        ordered = [self.default, *(r for r in self.routes.values() if r is not self.default)]
        return [r for r in ordered if r.admits(owner)]

    def resolve(self, model: str | None, owner: str = ANONYMOUS) -> Route:
        """The route a request's `model` names (None: the default route); 404 when unknown or not the caller's."""
        route = self.default if model is None else self.routes.get(model)
        if route is None or not route.admits(owner):
            names = ", ".join(repr(r.name) for r in self.visible(owner)) or "none for this key"
            raise ModelNotFoundError(f"the model {model!r} does not exist: this server serves {names} (GET /v1/models)")
        return route

    async def reload(self, retry_failed: bool = True) -> tuple[dict[str, ReloadResult], dict[str, BaseException]]:
        """Reload every manager in order: (result per route, error per route whose manager failed)."""
        results: dict[int, ReloadResult] = {}
        errors: dict[int, BaseException] = {}
        for manager in self.managers:
            try:
                results[id(manager)] = await manager.reload(retry_failed=retry_failed)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - one route's bad release must not stop the others' reload
                errors[id(manager)] = e
        by_route = {n: results[id(r.manager)] for n, r in self.routes.items() if id(r.manager) in results}
        failed = {n: errors[id(r.manager)] for n, r in self.routes.items() if id(r.manager) in errors}
        return by_route, failed

    async def watch(self, interval_s: float) -> None:
        """Poll every route's alias forever (one watcher for all: followers after the managers they follow)."""
        while True:
            for manager in self.managers:
                await manager.poll()
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        for manager in reversed(self.managers):
            await manager.close()


def build_route_table(
    config: PipelineConfig,
    alias_manager: Callable[[str], ReleaseManager],
    metrics: ServingMetrics,
    keys: ApiKeys,
) -> RouteTable:
    """The routes of `serving.route_table()`. `alias_manager(alias)` makes the manager of a registry alias (called
    once per distinct alias)."""
    serving = config.serving
    sources: dict[str, ReleaseManager] = {}
    followers: list[ReleaseManager] = []

    def source(alias: str) -> ReleaseManager:
        if alias not in sources:
            sources[alias] = alias_manager(alias)
        return sources[alias]

    routes = []
    for rc in serving.route_table():
        if rc.alias is not None:
            manager = source(rc.alias)
        else:
            followed = source(serving.alias)
            manager = ReleaseManager(
                FollowedRelease(followed.holder, serving.alias), serving.alias,
                EndpointLoader(followed.loader, followed.holder, rc), unload_grace_s=0.0,
                on_failure=lambda e: metrics.reloads.labels("failed").inc(),
            )
            followers.append(manager)
        limiter = RouteRateLimiter(rc.name, rc.rate_limit) if rc.rate_limit is not None else None
        routes.append(Route(rc, manager, limiter, route_owners(rc, keys)))
    return RouteTable(routes, serving.model_name, [*sources.values(), *followers])


def route_owners(route: RouteConfig, keys: ApiKeys) -> frozenset[str] | None:
    """The owner ids of the keys allowed on `route` (None: every caller), checked against the server's keys."""
    if route.api_keys_env is None:
        return None
    where = f"serving.routes[{route.name}].api_keys_env"
    if keys.open:
        raise ConfigError(where, ["a route limited to some API keys needs API keys on: set the variable named by "
                                  "serving.api_keys_env"])
    allowed = ApiKeys.from_env(route.api_keys_env)
    if allowed.open:
        raise ConfigError(where, [f"the variable {route.api_keys_env} holds no key: set it to the comma-separated "
                                  "keys that may use the route"])
    unknown = allowed.owners() - keys.owners()
    if unknown:
        raise ConfigError(where, [f"{len(unknown)} key(s) in {route.api_keys_env} are not among the server's API keys "
                                  "(serving.api_keys_env): add them there too"])
    return allowed.owners()

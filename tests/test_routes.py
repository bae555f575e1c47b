"""The route table: one lookup per request, 404 and 405 from the table, every route with a role."""

from __future__ import annotations

import pytest

from homestack.errors import MethodNotAllowed, NotFound
from homestack.keys import Role
from homestack.gateway.routes import Route, RouteTable, routes
from homestack.gateway.surfaces.openai import CHAT

TABLE = RouteTable(routes())


@pytest.mark.parametrize("method, path, handler, params", [
    ("POST", "/v1/chat/completions", "serve_model", {}),
    ("GET", "/v1/models", "list_models", {}),
    ("GET", "/v1/models/smollm2", "get_model", {"name": "smollm2"}),
    ("POST", "/admin/models/gemma3/load", "load", {"name": "gemma3"}),
    ("GET", "/admin/logs/x.y-z", "logs", {"name": "x.y-z"}),
    ("GET", "/ui/app.js", "page", {"file": "app.js"}),
    ("DELETE", "/v1/knowledge/collections/docs/sources", "relay", {"name": "docs"}),
    ("GET", "/health", "health", {}),
])
def test_lookup_finds_the_handler_and_its_parameters(method, path, handler, params):
    route, found = TABLE.match(method, path)
    assert route.handler.__name__ == handler
    assert found == params


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/v1/chat/completions", "POST"),
    ("DELETE", "/v1/models", "GET"),
    ("POST", "/ui/", "GET, HEAD"),
    ("GET", "/admin/models/x/load", "POST"),
    ("PUT", "/v1/knowledge/collections/docs", "DELETE, GET"),
])
def test_a_known_path_with_another_method_is_405_naming_the_allowed_ones(method, path, allowed):
    with pytest.raises(MethodNotAllowed) as info:
        TABLE.match(method, path)
    assert info.value.status == 405
    assert (b"allow", allowed.encode()) in info.value.headers()


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/chat", "/admin/models/x", "/ui/a/b", "/v1/models/"])
def test_an_unknown_path_is_404(path):
    with pytest.raises(NotFound):
        TABLE.match("GET", path)


def test_every_route_declares_a_role_and_only_health_the_page_and_the_api_document_are_public():
    public = {r.path for r in TABLE.routes if r.role is Role.PUBLIC}
    assert public == {"/health", "/ui", "/ui/", "/ui/{file}", "/openapi.json"}
    assert all(isinstance(r.role, Role) for r in TABLE.routes)
    assert {r.role for r in TABLE.routes if r.path.startswith("/admin/")} == {Role.ADMIN}


def test_model_routes_log_and_carry_their_surface():
    route, _ = TABLE.match("POST", "/v1/chat/completions")
    assert route.logged and route.operation is CHAT and route.surface is CHAT.surface
    assert not TABLE.match("GET", "/v1/models")[0].logged


def test_metrics_route_exists_only_when_metrics_are_on():
    assert TABLE.match("GET", "/metrics")[0].role is Role.ANY
    with pytest.raises(NotFound):
        RouteTable(routes(metrics=False)).match("GET", "/metrics")


def test_a_route_listed_twice_is_refused():
    route = TABLE.routes[0]
    with pytest.raises(ValueError, match="listed twice"):
        RouteTable([route, Route(route.method, route.path, Role.ANY, route.handler)])

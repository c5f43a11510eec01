"""The API's operation registry and its OpenAPI 3.1 document, both built from the same pydantic models.

Each view is declared with `@operation(...)`: its method and path, the scope it needs, and the pydantic models of
its query, body and answer. The decorator registers the Flask route, and the wrapper it installs parses the query
and body with those models and serializes the answer with the response model; `openapi()` turns the same
declarations into the document. So the document cannot drift from what the code accepts and answers.

Why pydantic: it is already part of the stack's dependency tree, it validates and serializes with the same model,
and its JSON Schema output is draft 2020-12, the dialect of OpenAPI 3.1, so schemas go into the document unchanged
(apispec/marshmallow would need a second schema language; spectree wraps the same pydantic with less control over
errors, which here must be problem+json).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, Response, json, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError
from pydantic.json_schema import models_json_schema

from campaigns.models import ApiScope
from campaigns.web.api.problems import ApiProblem, Problem

# Path ids beyond their column's range are simply not found (PostgreSQL would refuse to compare them).
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1
BIG_ID_PARAMS = frozenset({"contact_id", "delivery_id"})


def max_id(name: str) -> int:
    return MAX_BIG_ID if name in BIG_ID_PARAMS else MAX_ID
API_PREFIX = "/api/v1"
_FLASK_PARAM = re.compile(r"<(?:(int|string|path):)?([a-z_]+)>")


@dataclass
class Operation:
    """One documented operation (method + path)."""

    method: str
    rule: str                        # Flask rule, e.g. /api/v1/contacts/<int:contact_id>
    endpoint: str
    tag: str
    summary: str
    description: str
    scope: ApiScope | None           # None: not key-authenticated (documents, shop webhooks)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    extra_responses: dict[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    security: list[dict[str, list[str]]] | None = None
    idempotent: bool = False         # accepts an Idempotency-Key header (POST operations)
    raw_body: dict[str, Any] | None = None   # the documented schema of a body the view reads itself (webhooks)

    @property
    def path(self) -> str:
        return _FLASK_PARAM.sub(lambda m: "{" + m.group(2) + "}", self.rule)

    @property
    def int_params(self) -> list[str]:
        return [m.group(2) for m in _FLASK_PARAM.finditer(self.rule) if m.group(1) == "int"]

    @property
    def str_params(self) -> list[str]:
        return [m.group(2) for m in _FLASK_PARAM.finditer(self.rule) if m.group(1) != "int"]


OPERATIONS: list[Operation] = []
# Hooks the auth and idempotency modules install: (operation) -> None before the view; they raise ApiProblem.
Before = Callable[[Operation], None]


@dataclass
class Hooks:
    """What runs around every operation: filled by campaigns.web.api.guard when it is imported (the blueprint
    module imports it), so this module needs no import of the key and idempotency machinery."""

    before: list[Before] = field(default_factory=list)
    wrap: list[Callable[[Operation, Callable[[], Response]], Response]] = field(default_factory=list)


HOOKS = Hooks()


def field_errors(exc: PydanticError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic's errors as problem+json `errors` entries."""
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err.get("loc", ()))
        out.append({"field": (prefix + path) or prefix.rstrip("."), "message": str(err.get("msg", "invalid"))})
    return out


MAX_DEPTH = 32      # JSON nesting accepted in a request; deeper documents could not even be answered back


def unstorable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The path of the first thing in a request no database should get — a string (key or value) with a NUL
    character or a lone surrogate (invalid UTF-8; PostgreSQL refuses both in text and jsonb), NaN or Infinity
    (which Python's parser accepts, but JSON and jsonb do not), or nesting deeper than MAX_DEPTH — or None."""
    if depth > MAX_DEPTH:
        return path or "value"
    if isinstance(value, float) and not math.isfinite(value):     # NaN, Infinity: not JSON, refused by jsonb
        return path or "value"
    if isinstance(value, str):
        if "\x00" in value:
            return path or "value"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "value"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = unstorable(str(key), where, depth + 1) or unstorable(item, where, depth + 1)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = unstorable(item, f"{path}.{i}" if path else str(i), depth + 1)
            if found:
                return found
    return None


def _refuse_unstorable(value: Any, what: str) -> None:
    where = unstorable(value)
    if where is not None:
        raise ApiProblem(422, f"the {what} contains a NUL character, invalid Unicode or nesting deeper than "
                              f"{MAX_DEPTH} levels",
                         errors=[{"field": where[:200], "message": "NUL characters, lone surrogates and deep "
                                                                   "nesting are refused"}])


def _parse_query(model: type[BaseModel]) -> BaseModel:
    data = {k: v for k, v in request.args.items() if k in model.model_fields}
    _refuse_unstorable(data, "query")
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        raise ApiProblem(422, "the query parameters are invalid", errors=field_errors(exc)) from None


def _parse_body(model: type[BaseModel]) -> BaseModel:
    if not request.mimetype or request.mimetype.split(";")[0].strip() not in ("application/json",):
        raise ApiProblem(415, "send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=True)
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, RecursionError):      # RecursionError: nesting deeper than the parser goes
        raise ApiProblem(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiProblem(400, "the body must be a JSON object")
    _refuse_unstorable(payload, "body")
    try:
        return model.model_validate(payload)
    except PydanticError as exc:
        raise ApiProblem(422, "the body is invalid", errors=field_errors(exc)) from None


def render(model: BaseModel | None, status: int, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer from a response model (204 without one)."""
    if model is None:
        return Response(status=status, headers=headers)
    resp = Response(model.model_dump_json(), status=status, mimetype="application/json", headers=headers)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def operation(bp: Blueprint, method: str, rule: str, *, tag: str, summary: str, scope: ApiScope | None,
              query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
              response: type[BaseModel] | None = None, status: int = 200, errors: tuple[int, ...] = (),
              extra_responses: dict[int, tuple[str, type[BaseModel] | None]] | None = None,
              security: list[dict[str, list[str]]] | None = None, raw: bool = False,
              raw_body: dict[str, Any] | None = None) -> Callable:
    """Declare and register one API operation.

    The view receives the path arguments, plus `query=` and `body=` (parsed models) when declared, and returns a
    response model instance, (model, status) or (model, status, headers); raw=True views return a Response as is.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        op = Operation(method=method, rule=rule, endpoint=view.__name__, tag=tag, summary=summary,
                       description=(view.__doc__ or "").strip(), scope=scope, query=query, body=body,
                       response=response, status=status, errors=errors, extra_responses=extra_responses or {},
                       security=security, idempotent=method == "POST" and scope is not None, raw_body=raw_body)

        @wraps(view)
        def handler(**kwargs: Any) -> Response:
            for name in op.int_params:
                if not 1 <= kwargs[name] <= max_id(name):
                    raise ApiProblem(404, f"no such {name.removesuffix('_id')}")
            for name in op.str_params:
                if unstorable(kwargs[name]) or len(kwargs[name]) > 64:
                    raise ApiProblem(404, f"no such {name}")
            for hook in HOOKS.before:
                hook(op)

            def run() -> Response:
                args = dict(kwargs)
                if query is not None:
                    args["query"] = _parse_query(query)
                if body is not None:
                    args["body"] = _parse_body(body)
                result = view(**args)
                if raw:
                    return result
                if isinstance(result, tuple):
                    return render(*result)
                return render(result, status)

            call = run
            for wrapper in HOOKS.wrap:
                call = (lambda w, inner: lambda: w(op, inner))(wrapper, call)
            return call()

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handler, methods=[method])
        OPERATIONS.append(op)
        return handler

    return decorate


# ------------------------------------------------------------------ the document

STANDARD_ERRORS = {400: "The body is not a JSON object", 401: "No key, an unknown key or a revoked key",
                   403: "The key lacks the scope this operation needs", 404: "Not found",
                   409: "Conflict: the state does not allow it, or the same Idempotency-Key is still in use",
                   410: "Gone", 413: "The body is too large", 415: "The body is not JSON",
                   422: "Invalid input; `errors` names the fields", 429: "Rate limit exceeded; see Retry-After"}


def _responses(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}}
    out: dict[str, Any] = {str(op.status): ok}
    for status, (description, model) in op.extra_responses.items():
        entry: dict[str, Any] = {"description": description}
        if model is not None:
            entry["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        out[str(status)] = entry
    codes = set(op.errors)
    if op.scope is not None:
        codes |= {401, 403, 429}
    if op.query is not None or op.body is not None or op.int_params or op.str_params:
        codes.add(422)
    if op.body is not None:
        codes |= {400, 413, 415}
    if op.int_params or op.str_params:
        codes.add(404)
    if op.idempotent:
        codes |= {409, 422}
    wording = dict(STANDARD_ERRORS)
    if op.scope is None:
        wording[401] = "The shop's signature does not match the body"
    if op.body is None and op.raw_body is None:
        wording[400] = "Bad request (e.g. a malformed value in the path)"
    for code in sorted(codes):
        out[str(code)] = {"description": wording.get(code, "Error"),
                          "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    return out


def _parameters(op: Operation, defs: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in op.int_params:
        params.append({"name": name, "in": "path", "required": True,
                       "schema": {"type": "integer", "minimum": 1, "maximum": max_id(name)}})
    for name in op.str_params:
        params.append({"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 64}})
    if op.query is not None:
        schema = defs[op.query.__name__]
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            prop = dict(prop)
            description = prop.pop("description", "")
            prop.pop("title", None)
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if description:
                param["description"] = description
            params.append(param)
    if op.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "Any unique string (a UUID): a retry with the same key and body gets the "
                                      "first answer again instead of acting twice. Kept for 24 hours.",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}})
    return params


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every registered operation."""
    models: set[type[BaseModel]] = {Problem}
    for op in OPERATIONS:
        models |= {m for m in (op.body, op.response, op.query) if m is not None}
        models |= {m for _d, m in op.extra_responses.values() if m is not None}
    inputs = {op.body for op in OPERATIONS} | {op.query for op in OPERATIONS}
    _keys, top = models_json_schema([(m, "validation" if m in inputs else "serialization")
                                     for m in sorted(models, key=lambda m: m.__name__)],
                                    ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {"operationId": op.endpoint, "tags": [op.tag], "summary": op.summary,
                                 "responses": _responses(op)}
        if op.description:
            entry["description"] = inspect.cleandoc(op.description)
        if op.scope is not None:
            entry["description"] = (entry.get("description", "") + f"\n\nScope: `{op.scope.value}`").strip()
            entry["x-scope"] = op.scope.value
        params = _parameters(op, defs)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        elif op.raw_body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.raw_body}}}
        if op.security is not None:
            entry["security"] = op.security
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rapport API", "version": version,
                 "description": "Contacts, topics, segments, orders, events, campaigns, coupons, survey "
                                "answers and transactional messages. Authenticate with `Authorization: Bearer "
                                "<API key>` (Settings → API keys). Errors are RFC 9457 problem details. See "
                                "docs/api.md."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": {name: schema for name, schema in defs.items()
                                   if not any(name == op.query.__name__ for op in OPERATIONS if op.query)},
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                                      "description": "An API key: rk_<prefix>_<secret>"}}},
        "security": [{"apiKey": []}],
    }

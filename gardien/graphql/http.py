"""GraphQL over HTTP (API-3): a thin transport on the engine.

Follows the GraphQL-over-HTTP specification: `application/graphql-response+json` answers request
errors with 4xx, legacy `application/json` with 200; GET runs queries only. Every answer of
/graphql carries `Cache-Control: no-store` (it may hold a session token or private data). The
body is read up to a limit (413 beyond), before anything is parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from strawberry.http.ides import get_graphql_ide_html

from gardien.graphql.engine import GraphQLEngine
from gardien.observability import request_id_of
from gardien.resolvers.errors import ErrorCode
from gardien.schema.context import Context
from gardien.settings import REQUEST_LIMITS

logger = logging.getLogger("gardien.graphql")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
DEFAULT_MAX_BODY_BYTES = REQUEST_LIMITS["MAX_BODY_BYTES"]
NO_STORE = {"Cache-Control": "no-store"}


class RequestError(Exception):
    """The request is not a well-formed GraphQL request; nothing was executed."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
        code: ErrorCode = ErrorCode.BAD_REQUEST,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.code = code


@dataclass(frozen=True)
class GraphQLParams:
    query: str
    variables: dict[str, Any]
    operation_name: str | None


ContextFactory = Callable[[Request], Awaitable[Context]]
ResponseHook = Callable[[Context, Response], None]


class GraphQLEndpoint:
    """The /graphql route: reads the request, runs the engine's steps, writes the answer."""

    def __init__(
        self,
        engine: GraphQLEngine,
        context_factory: ContextFactory,
        *,
        graphiql: bool,
        finish_response: ResponseHook,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.engine = engine
        self._context_factory = context_factory
        self._graphiql = graphiql
        self._finish_response = finish_response
        self._max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        try:
            response = await self._handle(request)
        except ClientDisconnect:
            # The client left before its body arrived: nothing ran, no answer can reach it, and
            # it is neither our error nor a request error to count. A line, no traceback.
            logger.info("client disconnected before sending the whole request body")
            return Response(status_code=400, headers=NO_STORE)
        except Exception:
            # Never a traceback to the client: log it, answer the request ID (a bug to fix).
            request_id = request_id_of(request)
            logger.exception("unexpected error handling a GraphQL request")
            self.engine.count_error(ErrorCode.INTERNAL_ERROR)
            body = {
                "errors": [
                    {
                        "message": f"Internal error; quote request ID {request_id} to support.",
                        "extensions": {"code": ErrorCode.INTERNAL_ERROR.value},
                    }
                ]
            }
            response = Response(_dumps(body), 500, media_type=APPLICATION_JSON)
        response.headers.update(NO_STORE)
        return response

    async def _handle(self, request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            return self._request_error(
                RequestError("Use GET or POST.", 405, {"Allow": "GET, POST"}), APPLICATION_JSON
            )
        if request.method == "GET" and self._graphiql and _wants_html(request):
            return HTMLResponse(get_graphql_ide_html("graphiql"))
        try:
            media_type = _response_media_type(request)
        except RequestError as error:
            return self._request_error(error, APPLICATION_JSON)
        engine = self.engine
        try:
            params = await self._read_params(request)
            prepared = engine.prepare(params.query)
            if prepared.document is None:
                return self._errors_response(list(prepared.errors), media_type, request)
            operation = prepared.operation(params.operation_name)
            if operation is None:
                raise RequestError("Name an operation of the document in operationName.")
            if operation.kind == "subscription":
                raise RequestError("Subscriptions run over WebSocket (graphql-transport-ws).")
            if request.method == "GET" and operation.kind != "query":
                raise RequestError("Mutations are sent with POST.", 405, {"Allow": "POST"})
            variable_errors = engine.coerce_variables(operation, params.variables)
            if variable_errors:
                return self._errors_response(variable_errors, media_type, request)
            context = await self._context_factory(request)
        except RequestError as error:
            return self._request_error(error, media_type)

        result = await engine.execute(prepared, operation, params.variables, context)
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = engine.format_errors(result.errors, request_id_of(request))
        response = Response(_dumps(payload), 200, media_type=media_type)
        self._finish_response(context, response)
        return response

    def _errors_response(
        self, errors: list[GraphQLError], media_type: str, request: Request
    ) -> Response:
        # A request error: no data entry at all. 400 under the new media type, 200 under legacy.
        status = 400 if media_type == GRAPHQL_RESPONSE_JSON else 200
        body = {"errors": self.engine.format_errors(errors, request_id_of(request))}
        return Response(_dumps(body), status, media_type=media_type)

    def _request_error(self, error: RequestError, media_type: str) -> Response:
        self.engine.count_error(error.code)
        body = {"errors": [{"message": error.message, "extensions": {"code": error.code.value}}]}
        return Response(_dumps(body), error.status, headers=error.headers, media_type=media_type)

    async def _read_params(self, request: Request) -> GraphQLParams:
        if request.method == "GET":
            if len(request.scope.get("query_string", b"")) > self._max_body_bytes:
                raise RequestError(
                    f"The query string is longer than {self._max_body_bytes} bytes; use POST.",
                    414,
                    code=ErrorCode.REQUEST_TOO_LARGE,
                )
            return _params(_get_params(request))
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != APPLICATION_JSON:
            raise RequestError(f"Send the request body as {APPLICATION_JSON}.", 415)
        limit = self._max_body_bytes
        too_large = RequestError(
            f"The request body is larger than {limit} bytes.", 413, code=ErrorCode.REQUEST_TOO_LARGE
        )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large
            chunks.append(chunk)
        raw = _loads(b"".join(chunks), "body")
        if not isinstance(raw, dict):
            raise RequestError("The request body must be a JSON object.")
        return _params(raw)


def _dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=str)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and "query" not in request.query_params


def _response_media_type(request: Request) -> str:
    """Content negotiation; a missing Accept header means legacy application/json."""
    accept = request.headers.get("accept")
    if not accept:
        return APPLICATION_JSON
    best: tuple[float, str] | None = None
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        candidates = {
            GRAPHQL_RESPONSE_JSON: GRAPHQL_RESPONSE_JSON,
            APPLICATION_JSON: APPLICATION_JSON,
            "application/*": GRAPHQL_RESPONSE_JSON,
            "*/*": APPLICATION_JSON,
        }
        chosen = candidates.get(media)
        if chosen and quality > 0:
            # Prefer the newer media type when the client rates both equally.
            rank = (quality, chosen)
            if (
                best is None
                or rank[0] > best[0]
                or (rank[0] == best[0] and chosen == GRAPHQL_RESPONSE_JSON)
            ):
                best = rank
    if best is None:
        raise RequestError(f"Accept {GRAPHQL_RESPONSE_JSON} or {APPLICATION_JSON}.", 406)
    return best[1]


def _get_params(request: Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.query_params)
    if "variables" in raw:
        raw["variables"] = _loads(raw["variables"], "variables")
    if "extensions" in raw:
        raw["extensions"] = _loads(raw["extensions"], "extensions")
    return raw


def _params(raw: dict[str, Any]) -> GraphQLParams:
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestError("The request has no query.")
    variables = raw.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise RequestError("variables must be a JSON object.")
    operation_name = raw.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError("operationName must be a string.")
    extensions = raw.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError("extensions must be a JSON object.")
    return GraphQLParams(query=query, variables=variables, operation_name=operation_name or None)


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return orjson.loads(text)
    except (ValueError, RecursionError):
        raise RequestError(f"The {what} is not valid JSON.") from None

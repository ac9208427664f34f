"""GraphQL over HTTP (API-3): media types, status codes, GET for queries only, masked errors.

Follows the GraphQL-over-HTTP specification: `application/graphql-response+json` answers request
errors with 4xx, legacy `application/json` with 200; parse and validation results are cached per
document text, so a repeated query costs only its execution.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import get_variable_values
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry import Schema
from strawberry.http.ides import get_graphql_ide_html

from gardien.graphql_execution import executor_for, is_awaitable
from gardien.observability import Metrics, request_id_of
from gardien.resolvers.errors import DomainError, ErrorCode

logger = logging.getLogger("gardien.graphql")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
MAX_BODY_BYTES = 1_000_000
MAX_TOKENS = 5_000  # bounds parser work on hostile documents (API-4)
DOCUMENT_CACHE_SIZE = 512


class RequestError(Exception):
    """The request is not a well-formed GraphQL request; nothing was executed."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
        code: str = "BAD_REQUEST",
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


@dataclass(frozen=True)
class PreparedDocument:
    document: DocumentNode | None
    errors: list[GraphQLError]


ContextFactory = Callable[[Request], Awaitable[Any]]
ResponseHook = Callable[[Any, Response], None]


class GraphQLEndpoint:
    def __init__(
        self,
        schema: Schema,
        context_factory: ContextFactory,
        metrics: Metrics,
        *,
        graphiql: bool,
        introspection: bool,
        finish_response: ResponseHook,
    ) -> None:
        self._schema = schema._schema
        self._executor = executor_for(schema)
        self._context_factory = context_factory
        self._metrics = metrics
        self._graphiql = graphiql
        # None means graphql-core's specified rules; without introspection, one rule more.
        self._rules = None if introspection else [*specified_rules, NoSchemaIntrospectionCustomRule]
        self._finish_response = finish_response
        self._documents: OrderedDict[str, PreparedDocument] = OrderedDict()

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except Exception:
            # Never a traceback to the client: log it, answer the request ID (a bug to fix).
            request_id = request_id_of(request)
            logger.exception("unexpected error handling a GraphQL request")
            self._metrics.count_error(ErrorCode.INTERNAL_ERROR.value)
            body = {
                "errors": [
                    {
                        "message": f"Internal error; quote request ID {request_id} to support.",
                        "extensions": {"code": ErrorCode.INTERNAL_ERROR.value},
                    }
                ]
            }
            return Response(_dumps(body), 500, media_type=APPLICATION_JSON)

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
        try:
            params = await _read_params(request)
            prepared = self._prepare(params.query)
            if prepared.document is None:
                return self._errors_response(prepared.errors, media_type, request)
            operation = get_operation_ast(prepared.document, params.operation_name)
            if operation is None:
                raise RequestError("Name an operation of the document in operationName.")
            _check_method(request, operation)
            coerced = get_variable_values(
                self._schema, operation.variable_definitions or (), params.variables, max_errors=20
            )
            if isinstance(coerced, list):
                return self._errors_response(coerced, media_type, request)
            context = await self._context_factory(request)
        except RequestError as error:
            return self._request_error(error, media_type)

        result = execute(
            self._schema,
            prepared.document,
            context_value=context,
            variable_values=params.variables,
            operation_name=params.operation_name,
            executor_class=self._executor,
            is_awaitable=is_awaitable,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [self._format_error(e, request) for e in result.errors]
        response = Response(_dumps(payload), 200, media_type=media_type)
        self._finish_response(context, response)
        return response

    def _prepare(self, query: str) -> PreparedDocument:
        cached = self._documents.get(query)
        if cached is not None:
            self._documents.move_to_end(query)
            return cached
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            prepared = PreparedDocument(None, [error])
        else:
            errors = validate(self._schema, document, self._rules, max_errors=20)
            prepared = PreparedDocument(None if errors else document, errors)
        self._documents[query] = prepared
        if len(self._documents) > DOCUMENT_CACHE_SIZE:
            self._documents.popitem(last=False)
        return prepared

    def _format_error(self, error: GraphQLError, request: Request) -> dict[str, Any]:
        original = error.original_error
        formatted = error.formatted
        # graphql-core wraps its own explanations (e.g. variable coercion) as original errors too.
        if original is None or isinstance(original, GraphQLError):
            return dict(formatted)
        if isinstance(original, DomainError):
            self._metrics.count_error(original.code.value)
            extensions: dict[str, Any] = {"code": original.code.value}
            if original.field:
                extensions["field"] = original.field
            return {**formatted, "message": original.message, "extensions": extensions}
        # Unexpected: log it whole with the request ID; the client learns only the ID (API-2).
        request_id = request_id_of(request)
        logger.error(
            "unexpected error in %s",
            ".".join(str(p) for p in error.path or []),
            exc_info=original,
            extra={"request_id": request_id},
        )
        self._metrics.count_error(ErrorCode.INTERNAL_ERROR.value)
        return {
            **formatted,
            "message": f"Internal error; quote request ID {request_id} to support.",
            "extensions": {"code": ErrorCode.INTERNAL_ERROR.value, "requestId": request_id},
        }

    def _errors_response(
        self, errors: list[GraphQLError], media_type: str, request: Request
    ) -> Response:
        # A request error: no data entry at all. 400 under the new media type, 200 under legacy.
        self._metrics.count_error("GRAPHQL_VALIDATION_FAILED")
        status = 400 if media_type == GRAPHQL_RESPONSE_JSON else 200
        body = {"errors": [self._format_error(e, request) for e in errors]}
        return Response(_dumps(body), status, media_type=media_type)

    def _request_error(self, error: RequestError, media_type: str) -> Response:
        self._metrics.count_error(error.code)
        body = {"errors": [{"message": error.message, "extensions": {"code": error.code}}]}
        return Response(_dumps(body), error.status, headers=error.headers, media_type=media_type)


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


async def _read_params(request: Request) -> GraphQLParams:
    if request.method == "GET":
        raw: dict[str, Any] = dict(request.query_params)
        if "variables" in raw:
            raw["variables"] = _loads(raw["variables"], "variables")
        if "extensions" in raw:
            raw["extensions"] = _loads(raw["extensions"], "extensions")
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != APPLICATION_JSON:
            raise RequestError(f"Send the request body as {APPLICATION_JSON}.", 415)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise RequestError("The request body is too large.", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise RequestError("The request body is too large.", 413)
        raw = _loads(body, "body")
        if not isinstance(raw, dict):
            raise RequestError("The request body must be a JSON object.")
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


def _check_method(request: Request, operation: OperationDefinitionNode) -> None:
    if operation.operation == OperationType.SUBSCRIPTION:
        raise RequestError("Subscriptions run over WebSocket (graphql-transport-ws).")
    if request.method == "GET" and operation.operation != OperationType.QUERY:
        raise RequestError("Mutations are sent with POST.", 405, {"Allow": "POST"})

"""The GraphQL engine: prepare a document, gate the operation, execute it, format the answer.

Transport-independent: HTTP (http.py) and the WebSocket transport call the same steps —
`prepare`, `operation`, `coerce_variables`, `execute` (which asks the operation gate first) and
`format_errors` — and add only what their protocol needs (status codes, media types, cookies,
messages). Every error leaves here with `extensions.code` from the one ErrorCode enum and is
counted by code in the metrics, payload errors of mutations included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from graphql import ExecutionResult, GraphQLError, execute
from graphql.execution import Executor, create_source_event_stream, get_variable_values
from strawberry import Schema

from gardien.graphql.documents import (
    DEFAULT_CACHE_BYTES,
    DocumentPreparer,
    OperationKind,
    PreparedDocument,
    PreparedOperation,
    with_code,
)
from gardien.graphql.execution import AwaitableCheck, executor_for
from gardien.graphql.limits import Limits
from gardien.observability import Metrics
from gardien.resolvers import authz
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.schema.context import Context
from gardien.schema.errors import payload_errors

logger = logging.getLogger("gardien.graphql")

# The operation gate: may this actor run this kind of operation on these root fields?
# Raises DomainError to refuse; see resolvers/authz.check_operation.
OperationGate = Callable[[Actor, OperationKind, frozenset[str]], None]
MAX_VARIABLE_ERRORS = 20


class GraphQLEngine:
    """Runs documents against the schema; one per application."""

    def __init__(
        self,
        schema: Schema,
        metrics: Metrics,
        *,
        limits: Limits,
        introspection: bool,
        gate: OperationGate = authz.check_operation,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.schema = schema._schema
        self.metrics = metrics
        self.documents = DocumentPreparer(
            self.schema, limits, introspection=introspection, cache_bytes=cache_bytes
        )
        self._gate = gate
        self._executor = executor_for(schema)
        self._is_awaitable = AwaitableCheck()

    @property
    def hide_suggestions(self) -> bool:
        return self.documents.hide_suggestions

    def prepare(self, query: str) -> PreparedDocument:
        """Parsed, measured against the limits and validated; cached per document text."""
        return self.documents.prepare(query)

    def coerce_variables(
        self, operation: PreparedOperation, variables: dict[str, Any]
    ) -> list[GraphQLError]:
        """Errors of the variables against the operation's definitions (none when valid)."""
        coerced = get_variable_values(
            self.schema,
            operation.node.variable_definitions or (),
            variables,
            max_errors=MAX_VARIABLE_ERRORS,
            hide_suggestions=self.hide_suggestions,
        )
        if isinstance(coerced, list):
            return [with_code(e, ErrorCode.BAD_USER_INPUT) for e in coerced]
        return []

    def check_operation(self, operation: PreparedOperation, actor: Actor) -> None:
        """The operation gate (authz.check_operation by default); raises DomainError."""
        self._gate(actor, operation.kind, operation.root_fields)

    async def execute(
        self,
        prepared: PreparedDocument,
        operation: PreparedOperation,
        variables: dict[str, Any],
        context: Context,
        *,
        root_value: Any = None,
        gate: bool = True,
    ) -> ExecutionResult:
        """Gate, then execute. A refused operation runs nothing: data null, the refusal's code.

        A subscription's events are executed with the event as root_value and gate=False: the
        gate was asked when the subscription started (open_stream).
        """
        assert prepared.document is not None
        if gate:
            refused = self._refusal(operation, context)
            if refused is not None:
                return refused
        # Tasks that resolvers start copy this context: they append to the same list.
        collected: list[ErrorCode] = []
        token = payload_errors.set(collected)
        try:
            result = execute(
                self.schema,
                prepared.document,
                root_value=root_value,
                context_value=context,
                variable_values=variables,
                operation_name=operation.node.name.value if operation.node.name else None,
                executor_class=self._executor,
                is_awaitable=self._is_awaitable,
                hide_suggestions=self.hide_suggestions,
            )
            if not isinstance(result, ExecutionResult):
                result = await result
        finally:
            payload_errors.reset(token)
        for code in collected:
            self.count_error(code)
        return result

    def _refusal(self, operation: PreparedOperation, context: Context) -> ExecutionResult | None:
        try:
            self.check_operation(operation, context.actor)
        except DomainError as refusal:
            error = GraphQLError(refusal.message, operation.node, original_error=refusal)
            return ExecutionResult(data=None, errors=[error])
        return None

    async def open_stream(
        self,
        prepared: PreparedDocument,
        operation: PreparedOperation,
        variables: dict[str, Any],
        context: Context,
    ) -> Any:
        """Gate, then run the subscription field's subscribe function: its source (the transport
        follows it), or an ExecutionResult with the errors that refused it."""
        assert prepared.document is not None
        assert operation.kind == "subscription"
        refused = self._refusal(operation, context)
        if refused is not None:
            return refused
        executor = Executor.build(
            self.schema,
            prepared.document,
            context_value=context,
            raw_variable_values=variables,
            operation_name=operation.node.name.value if operation.node.name else None,
            is_awaitable=self._is_awaitable,
            hide_suggestions=self.hide_suggestions,
        )
        if isinstance(executor, list):
            return ExecutionResult(data=None, errors=executor)
        source = create_source_event_stream(executor)
        if self._is_awaitable(source):
            source = await source
        return source

    def format_errors(self, errors: list[GraphQLError], request_id: str) -> list[dict[str, Any]]:
        """Errors as the client sees them, each with its code; each counted by code."""
        return [self._format_error(error, request_id) for error in errors]

    def count_error(self, code: ErrorCode) -> None:
        self.metrics.count_error(code.value)

    def _format_error(self, error: GraphQLError, request_id: str) -> dict[str, Any]:
        original = error.original_error
        formatted = dict(error.formatted)
        if isinstance(original, DomainError):
            self.count_error(original.code)
            extensions: dict[str, Any] = {"code": original.code.value}
            if original.field:
                extensions["field"] = original.field
            if original.retry_after_seconds is not None:
                extensions["retryAfterSeconds"] = original.retry_after_seconds
            return {**formatted, "message": original.message, "extensions": extensions}
        code = (error.extensions or {}).get("code")
        if code is not None:
            self.metrics.count_error(str(code))
            return formatted
        if original is None or isinstance(original, GraphQLError):
            # graphql-core's own explanations during execution (a null in a non-null field, a
            # value that does not fit its type): the schema and the data disagree, a bug.
            self.count_error(ErrorCode.INTERNAL_ERROR)
            logger.error("execution error: %s", error.message, extra={"request_id": request_id})
            return {**formatted, "extensions": {"code": ErrorCode.INTERNAL_ERROR.value}}
        # Unexpected: log it whole with the request ID; the client learns only the ID (API-2).
        logger.error(
            "unexpected error in %s",
            ".".join(str(p) for p in error.path or []),
            exc_info=original,
            extra={"request_id": request_id},
        )
        self.count_error(ErrorCode.INTERNAL_ERROR)
        return {
            **formatted,
            "message": f"Internal error; quote request ID {request_id} to support.",
            "extensions": {"code": ErrorCode.INTERNAL_ERROR.value, "requestId": request_id},
        }

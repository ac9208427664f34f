"""Document preparation: parse, limits, validation, and the cache of prepared documents.

A document is prepared once per text: parsed with a token limit, measured against the limits
(limits.py) before graphql-core's rules see it, then validated (without introspection and without
"Did you mean" suggestions when introspection is off). The cache is keyed by a digest of the
text, bounded in memory (each entry is charged its text plus an over-estimate of the syntax tree
and tokens it keeps alive, ENTRY_OVERHEAD_BYTES + TOKEN_BYTES per token, measured with tracemalloc
in the tests) and in entries, and keeps a refused document only when it is small, so a flood of
junk documents can neither fill memory nor hold more than the budget.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    Lexer,
    OperationDefinitionNode,
    OperationType,
    Source,
    Token,
    TokenKind,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from gardien.graphql.limits import Limits, Measure, measure_operations
from gardien.resolvers.errors import ErrorCode

OperationKind = Literal["query", "mutation", "subscription"]
MAX_VALIDATION_ERRORS = 20
DEFAULT_CACHE_BYTES = 4 * 1024 * 1024
DEFAULT_CACHE_ENTRIES = 1000
# Heap held by one cached entry beyond its text, over-estimated (tests/gardien/graphql/
# test_documents.py measures it): ~2.9 KB for the entry, the prepared objects and the digest,
# ~330 bytes per token for the tokens and syntax nodes a parsed document keeps alive (its
# locations link every token); a syntax error keeps its text and one error only.
ENTRY_OVERHEAD_BYTES = 4096
TOKEN_BYTES = 512
# Refused documents are cached only up to this size: a client retrying the same small mistake
# costs nothing, and large junk is never kept.
MAX_CACHED_FAILURE_BYTES = 2048


@dataclass(frozen=True)
class PreparedOperation:
    """One operation of a valid document, with what the engine needs to gate and run it."""

    node: OperationDefinitionNode
    kind: OperationKind
    root_fields: frozenset[str]
    measure: Measure


@dataclass(frozen=True)
class PreparedDocument:
    """A parsed and validated document, or the errors that refuse it (document is None)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()
    operations: tuple[PreparedOperation, ...] = field(default=())

    def operation(self, name: str | None) -> PreparedOperation | None:
        """The operation to run: the named one, or the only one when no name is given."""
        if name is None:
            return self.operations[0] if len(self.operations) == 1 else None
        for operation in self.operations:
            if operation.node.name and operation.node.name.value == name:
                return operation
        return None


class DocumentPreparer:
    """Prepares documents for one schema with one set of limits; caches the results."""

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        *,
        introspection: bool,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.hide_suggestions = not introspection
        # graphql-core's specified rules; without introspection, one rule more.
        self._rules = (
            list(specified_rules)
            if introspection
            else [*specified_rules, NoSchemaIntrospectionCustomRule]
        )
        self._cache: OrderedDict[bytes, tuple[int, PreparedDocument]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cache_entries = cache_entries
        self._cached_bytes = 0

    def prepare(self, query: str) -> PreparedDocument:
        key = _digest(query)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached[1]
        prepared, tokens = self._prepare(query)
        charge = len(query) + ENTRY_OVERHEAD_BYTES + TOKEN_BYTES * tokens
        if (prepared.document is not None or len(query) <= MAX_CACHED_FAILURE_BYTES) and (
            charge <= self._cache_bytes
        ):
            self._cache[key] = (charge, prepared)
            self._cached_bytes += charge
            while self._cached_bytes > self._cache_bytes or len(self._cache) > self._cache_entries:
                _, (evicted, _) = self._cache.popitem(last=False)
                self._cached_bytes -= evicted
        return prepared

    @property
    def cached_bytes(self) -> int:
        """What the cached entries are charged: their texts and their estimated overhead."""
        return self._cached_bytes

    @property
    def cached_entries(self) -> int:
        return len(self._cache)

    def __contains__(self, query: str) -> bool:
        return _digest(query) in self._cache

    def _prepare(self, query: str) -> tuple[PreparedDocument, int]:
        """The prepared document and the number of tokens its syntax tree keeps alive."""
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLSyntaxError as error:
            return PreparedDocument(None, (self._syntax_error(query, error),)), 0
        tokens = _token_count(document)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        shapes, limit_errors = measure_operations(self.schema, self.limits, operations, fragments)
        if limit_errors:
            return PreparedDocument(None, tuple(limit_errors)), tokens
        errors = validate(
            self.schema,
            document,
            self._rules,
            max_errors=MAX_VALIDATION_ERRORS,
            hide_suggestions=self.hide_suggestions,
        )
        if errors:
            return PreparedDocument(
                None, tuple(with_code(e, ErrorCode.GRAPHQL_VALIDATION_FAILED) for e in errors)
            ), tokens
        return PreparedDocument(
            document,
            operations=tuple(
                PreparedOperation(
                    node=operation,
                    kind=_KINDS[operation.operation],
                    root_fields=shapes[index].root_fields,
                    measure=shapes[index].measure,
                )
                for index, operation in enumerate(operations)
            ),
        ), tokens

    def _syntax_error(self, query: str, error: GraphQLSyntaxError) -> GraphQLError:
        if _more_tokens_than(query, self.limits.max_tokens):
            return GraphQLError(
                f"The document has more than {self.limits.max_tokens} tokens;"
                " send a smaller document.",
                extensions={"code": ErrorCode.QUERY_TOO_LARGE.value},
            )
        return with_code(error, ErrorCode.GRAPHQL_PARSE_FAILED)


_KINDS: dict[OperationType, OperationKind] = {
    OperationType.QUERY: "query",
    OperationType.MUTATION: "mutation",
    OperationType.SUBSCRIPTION: "subscription",
}


def _digest(query: str) -> bytes:
    return hashlib.blake2b(query.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _token_count(document: DocumentNode) -> int:
    """The tokens the document's locations keep alive (comments included): at most the
    parser's token limit, counted along the token chain."""
    if document.loc is None:
        return 0
    count = 0
    token: Token | None = document.loc.start_token
    while token is not None:
        count += 1
        token = token.next
    return count


def _more_tokens_than(query: str, limit: int) -> bool:
    """Whether the text has more tokens (comments included, as the parser counts) than limit.

    Asked only after a syntax error, to tell the token limit from a mistake in the text.
    """
    lexer = Lexer(Source(query))
    token = lexer.token
    count = 0
    try:
        while token.kind is not TokenKind.EOF:
            following = lexer.advance()
            while token is not following and token.next is not None:
                token = token.next
                count += 1
            token = following
            if count > limit + 1:  # + 1: the end of the text is no token
                return True
    except GraphQLError:
        return False
    return count - 1 > limit


def with_code(error: GraphQLError, code: ErrorCode) -> GraphQLError:
    """The error with extensions.code set (graphql-core's errors carry none)."""
    if error.extensions and "code" in error.extensions:
        return error
    return GraphQLError(
        error.message,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        error.original_error,
        {**(error.extensions or {}), "code": code.value},
    )

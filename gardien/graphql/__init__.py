"""The GraphQL engine: Strawberry defines the schema, this package runs it, for every transport.

Strawberry schema extensions (and Strawberry's own HTTP views) do not run on this path: the
schema is executed on graphql-core directly. Each cross-cutting rule has its place here instead:
- documents.py — parse (token limit), the limits, validation (introspection off and no
  "Did you mean" suggestions in production), and the cache of prepared documents;
- limits.py — depth, aliases, root fields, directives and cost, measured before any resolver;
- engine.py — the GraphQLEngine every transport uses: prepare → operation gate
  (resolvers/authz.check_operation) → execute → errors formatted with a code and counted;
- execution.py — graphql-core's executor with the shortcut for plain attribute fields;
- http.py — GraphQL over HTTP: body limit, media types, status codes, Cache-Control, cookies.
A WebSocket transport (graphql-transport-ws) calls the same engine steps with its own context.
"""

from gardien.graphql.engine import GraphQLEngine, OperationGate
from gardien.graphql.http import GraphQLEndpoint, RequestError
from gardien.graphql.limits import Limits

__all__ = ["GraphQLEndpoint", "GraphQLEngine", "Limits", "OperationGate", "RequestError"]

"""Storage: the Tortoise ORM models of every aggregate, and their migrations."""

# Tortoise discovers models module by module; this list is the one source of that discovery.
MODEL_MODULES: list[str] = [
    "gardien.models.users",
    "gardien.models.organisations",
    "gardien.models.products",
    "gardien.models.invitations",
    "gardien.models.sessions",
    "gardien.models.mfa",
    "gardien.models.activity",
    "gardien.models.domains",
    "gardien.models.recovery",
    "gardien.models.outbox",
    "gardien.models.ratelimits",
    "gardien.models.mail",
]

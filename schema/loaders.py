"""DataLoaders, made per request: a page costs the same number of queries whatever its size."""

from __future__ import annotations

from dataclasses import dataclass, field

from strawberry.dataloader import DataLoader

from gardien.models.users import User
from gardien.resolvers import organisations, two_factor


@dataclass
class Loaders:
    two_factor_enabled: DataLoader[int, bool] = field(
        default_factory=lambda: DataLoader(two_factor.load_two_factor_enabled)
    )
    user: DataLoader[int, User | None] = field(
        default_factory=lambda: DataLoader(organisations.load_users)
    )

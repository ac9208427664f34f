"""The current password asked again before a change of contacts or login (PRO-2, PRO-3, PRO-5)."""

from __future__ import annotations

from datetime import timedelta

from tortoise.transactions import in_transaction

from gardien.models.users import User
from gardien.resolvers import activity, ratelimits
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import verify_password

# A signed-in session is not proof enough of who types: a borrowed browser must not be able to
# move the recovery contacts. Five wrong passwords per quarter hour and account, counted before
# verifying (atomic, so concurrent guesses cannot all pass); a success gives its attempt back.
PASSWORD_CONFIRMATIONS_PER_USER = ratelimits.Rule(
    "password_confirmation_user", 5, timedelta(minutes=15)
)
WRONG_PASSWORD_MESSAGE = "The current password is incorrect."


async def confirm_current_password(
    services: Services, meta: RequestMeta, user_id: int, password: str, *, operation: str
) -> User:
    """The user's row once the password is right; INVALID_CREDENTIALS (recorded) otherwise."""
    subject = f"user:{user_id}"
    attempt = await ratelimits.consume(services, PASSWORD_CONFIRMATIONS_PER_USER, subject)
    if not attempt.allowed:
        raise ratelimits.refusal(services, attempt)
    user = await User.get(id=user_id)
    if not await verify_password(user.password_hash, password[:1024]):
        async with in_transaction():
            await activity.password_check_failed(services, meta, user_id, operation=operation)
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, WRONG_PASSWORD_MESSAGE, "currentPassword")
    await ratelimits.give_back(services, PASSWORD_CONFIRMATIONS_PER_USER, subject)
    return user

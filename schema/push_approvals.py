"""Push approval with number matching (MFA-4): registering the approval app, the sign-in's
request, the app's live feed of requests and its answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import strawberry

from gardien.models.activity import ActivityEvent
from gardien.models.enums import ApprovalStatus
from gardien.resolvers import push_approvals, second_factor
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.events import EventSource
from gardien.schema.users import TwoFactorMethodNode


@strawberry.input
class RegisterPushDeviceInput:
    label: str
    push_token: str | None = strawberry.field(
        default=None, description="The phone's push service token, if the app has one."
    )


@strawberry.type
class RegisterPushDevicePayload:
    device: TwoFactorMethodNode | None = None
    device_credential: str | None = strawberry.field(
        default=None,
        description="Shown once: the app authenticates with `Authorization: Device <credential>`.",
    )
    backup_codes: list[str] = strawberry.field(
        default_factory=list,
        description="Shown once, when this device turned two-factor authentication on.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RequestLoginApprovalInput:
    challenge_id: str


@strawberry.type
class RequestLoginApprovalPayload:
    approval_id: strawberry.ID | None = None
    number: int | None = strawberry.field(
        default=None, description="Show it: the phone must pick it among three to approve."
    )
    expires_at: datetime | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AnswerLoginApprovalInput:
    approval_id: strawberry.ID
    approve: bool
    number: int | None = strawberry.field(
        default=None, description="The number picked; required to approve. A wrong one denies."
    )


LoginApprovalStatus = strawberry.enum(
    ApprovalStatus,
    name="LoginApprovalStatus",
    description="Where a sign-in approval request stands.",
)


@strawberry.type
class AnswerLoginApprovalPayload:
    status: LoginApprovalStatus | None = None  # type: ignore[valid-type]
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A sign-in waiting for this phone's answer (MFA-4).")
class LoginApprovalRequest:
    approval_id: strawberry.ID
    status: LoginApprovalStatus = strawberry.field(  # type: ignore[valid-type]
        description="PENDING until a device answers or it expires; replayed requests (sent"
        " again when the phone subscribes) may have been answered since."
    )
    country: str | None = strawberry.field(description="Where the sign-in comes from.")
    device: str | None = strawberry.field(description="The browser and system signing in.")
    requested_at: datetime
    expires_at: datetime
    numbers: list[int] = strawberry.field(
        description="Three numbers: the one the sign-in screen shows, and two decoys."
    )


class LoginApprovalSource(EventSource[LoginApprovalRequest | None]):
    """The devices' feed: each request event becomes the request it names, read when sent."""

    async def root_value(self, event: ActivityEvent) -> LoginApprovalRequest | None:
        assert event.subject_id is not None
        approval = await push_approvals.requested_approval(
            event.subject_id, str(event.data.get("approval_id", ""))
        )
        if approval is None:
            return None
        return LoginApprovalRequest(
            approval_id=strawberry.ID(str(approval.id)),
            status=approval.status,
            country=approval.country,
            device=approval.device,
            requested_at=approval.created_at,
            expires_at=approval.expires_at,
            numbers=push_approvals.candidates_of(approval),
        )


@strawberry.type
class PushApprovalMutations:
    @strawberry.mutation(description="Add this phone's approval app as a second factor (MFA-4).")
    async def register_push_device(
        self, info: Info, input: RegisterPushDeviceInput
    ) -> RegisterPushDevicePayload:
        context = info.context
        try:
            registered = await push_approvals.register_device(
                context.services,
                context.meta,
                context.actor,
                label=input.label,
                push_token=input.push_token,
            )
        except DomainError as error:
            return RegisterPushDevicePayload(errors=[UserError.from_domain(error)])
        return RegisterPushDevicePayload(
            device=TwoFactorMethodNode.from_model(registered.method),
            device_credential=registered.credential,
            backup_codes=registered.backup_codes,
        )

    @strawberry.mutation(
        description="Second step of signing in with the approval app (MFA-4): the phones are"
        " asked; show `number`, then poll completeSecondFactor with method PUSH."
    )
    async def request_login_approval(
        self, info: Info, input: RequestLoginApprovalInput
    ) -> RequestLoginApprovalPayload:
        context = info.context
        try:
            issued = await second_factor.request_login_approval(
                context.services, context.meta, challenge_id=input.challenge_id
            )
        except DomainError as error:
            return RequestLoginApprovalPayload(errors=[UserError.from_domain(error)])
        return RequestLoginApprovalPayload(
            approval_id=strawberry.ID(issued.approval_id),
            number=issued.approval.number,
            expires_at=issued.approval.expires_at,
        )

    @strawberry.mutation(
        description="The approval app's answer (MFA-4), with its device credential only."
    )
    async def answer_login_approval(
        self, info: Info, input: AnswerLoginApprovalInput
    ) -> AnswerLoginApprovalPayload:
        context = info.context
        try:
            approval = await push_approvals.answer(
                context.services,
                context.meta,
                context.actor,
                approval_id=str(input.approval_id),
                approve=input.approve,
                number=input.number,
            )
        except DomainError as error:
            return AnswerLoginApprovalPayload(errors=[UserError.from_domain(error)])
        return AnswerLoginApprovalPayload(status=approval.status)


@strawberry.type
class PushApprovalSubscription:
    @strawberry.subscription(
        description="Sign-in approval requests for your phone as they are made (MFA-4), with the"
        " approval app's device credential only."
    )
    async def login_approval_requests(
        self, info: Info
    ) -> AsyncIterator[LoginApprovalRequest | None]:
        context = info.context
        stream = await push_approvals.device_stream(context.services, context.actor)
        return LoginApprovalSource(stream)

"""Demo data for `make run`: the organisation "Démo SA" with one member of each role."""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.transactions import in_transaction

from gardien import db
from gardien.clock import SystemClock
from gardien.models.domains import Domain
from gardien.models.enums import DomainStatus, ProductKind, Role
from gardien.models.mail import Mailbox, MailMessage
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import accounts, events, profile
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import Keyring, hash_password
from gardien.settings import Settings

DEMO_PASSWORD = "correct horse battery staple"  # published demo credentials
DEMO_ORGANISATION = "Démo SA"
DEMO_MEMBERS = (
    ("anna.legal@demo.example", "Anna Legal", Role.LEGAL_REPRESENTATIVE),
    ("marc.admin@demo.example", "Marc Admin", Role.ADMINISTRATOR),
    ("lea.collab@demo.example", "Léa Collab", Role.COLLABORATOR),
    ("tom.extern@demo.example", "Tom Extern", Role.EXTERNAL),
)


def credentials_text() -> str:
    lines = [f'Demo organisation "{DEMO_ORGANISATION}", password for everyone: {DEMO_PASSWORD}']
    lines += [f"  {role.value:<21} {email}" for email, _, role in DEMO_MEMBERS]
    # ORG-1: without GARDIEN_SMTP_URL nothing is delivered; the link waits in the outbox.
    lines.append("A new sign-up (signUp) is confirmed with the link `gardien outbox` lists.")
    return "\n".join(lines)


async def load_demo(settings: Settings) -> str:
    database = await db.open_database(settings.database_url)
    try:
        if await User.exists(email=DEMO_MEMBERS[0][0]):
            return "Demo data already loaded.\n" + credentials_text()
        services = Services(
            settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
        )
        await _create(services)
        return "Demo data loaded.\n" + credentials_text()
    finally:
        await db.close_database(database)


async def _create(services: Services) -> None:
    now = services.clock.now()
    meta = RequestMeta(ip="127.0.0.1", country="CH", device="demo loader")
    email, name, _ = DEMO_MEMBERS[0]
    password_hash = await hash_password(DEMO_PASSWORD)
    # Known demo addresses: opened directly, as a confirmed sign-up would (ORG-1).
    legal = await accounts.open_account(
        services, meta, email=email, password_hash=password_hash, display_name=name, language="fr"
    )
    organisation = legal.organisation
    async with in_transaction():
        await Organisation.filter(id=organisation.id).update(name=DEMO_ORGANISATION)
        products = {
            kind: await Product.create(
                organisation=organisation, kind=kind, name=label, created_at=now
            )
            for kind, label in (
                (ProductKind.MAIL_SERVICE, "Mail demo-sa.ch"),
                (ProductKind.WEB_DRIVE, "kDrive Démo"),
                (ProductKind.HOSTING, "Hébergement Web démo"),
                (ProductKind.DOMAIN, "Domaines Démo"),
                (ProductKind.CALENDAR, "Calendrier Démo"),
                (ProductKind.VPS, "VPS Démo"),
            )
        }
        for member_email, member_name, role in DEMO_MEMBERS[1:]:
            user = await User.create(
                email=member_email,
                password_hash=password_hash,
                password_changed_at=now,
                display_name=member_name,
                language="fr",
                country="CH",
                current_organisation=organisation,
                support_code_encrypted=profile.new_support_code(services),
                created_at=now,
            )
            membership = await Membership.create(
                organisation=organisation,
                user=user,
                role=role,
                created_at=now,
                notify_technical=role == Role.ADMINISTRATOR,
                notify_domain_expiry=role == Role.ADMINISTRATOR,
            )
            if role in (Role.COLLABORATOR, Role.EXTERNAL):
                await ProductGrant.create(
                    membership=membership, product=products[ProductKind.WEB_DRIVE]
                )
            if role == Role.COLLABORATOR:
                await ProductGrant.create(
                    membership=membership, product=products[ProductKind.MAIL_SERVICE]
                )
            await events.record(
                events.NewEvent(
                    type="member.joined",
                    occurred_at=now,
                    actor_id=legal.user.id,
                    subject_id=user.id,
                    subject_email=None,
                    organisation_id=organisation.id,
                    ip=meta.ip,
                    country=meta.country,
                    device=meta.device,
                    data={"role": role.value},
                )
            )
        await _domains(organisation, now)
        await _mailboxes(products[ProductKind.MAIL_SERVICE], now)


# BLK-2: the mail service hosts the team's addresses on demo-sa.ch, a domain of the organisation
# (a mailbox's domain must be one of its own).
DEMO_MAILBOXES = ("contact@demo-sa.ch", "anna.legal@demo-sa.ch", "lea.collab@demo-sa.ch")


async def _mailboxes(mail_service: Product, now: datetime) -> None:
    for address in DEMO_MAILBOXES:
        mailbox = await Mailbox.create(product=mail_service, address=address, created_at=now)
        await MailMessage.create(
            mailbox=mailbox,
            sender="facturation@fournisseur.example",
            subject="Bienvenue dans votre boîte aux lettres",
            body=f"Bonjour,\n\nL’adresse {address} est prête.\n",
            received_at=now,
        )


async def _domains(organisation: Organisation, now: object) -> None:
    from datetime import datetime

    assert isinstance(now, datetime)
    await Domain.create(
        organisation=organisation,
        name="demo-sa.ch",
        live_name="demo-sa.ch",
        tld_id="ch",
        status=DomainStatus.ACTIVE,
        registered_at=now - timedelta(days=700),
        expires_at=now + timedelta(days=300),
        renewal_warranty=True,
    )
    await Domain.create(
        organisation=organisation,
        name="demo-sa.fr",
        live_name="demo-sa.fr",
        tld_id="fr",
        status=DomainStatus.ACTIVE,
        registered_at=now - timedelta(days=358),
        expires_at=now + timedelta(days=7),
    )
    await Domain.create(
        organisation=organisation,
        name="demo-boutique.com",
        live_name="demo-boutique.com",
        tld_id="com",
        status=DomainStatus.REDEMPTION,
        registered_at=now - timedelta(days=380),
        expires_at=now - timedelta(days=15),
        redemption_ends_at=now + timedelta(days=15),
    )
    # A second one in redemption, so restoring one in the console still leaves that state to see.
    await Domain.create(
        organisation=organisation,
        name="atelier-demo.de",
        live_name="atelier-demo.de",
        tld_id="de",
        status=DomainStatus.REDEMPTION,
        registered_at=now - timedelta(days=740),
        expires_at=now - timedelta(days=10),
        redemption_ends_at=now + timedelta(days=20),
    )
    await Domain.create(
        organisation=organisation,
        name="ancienne-demo.be",
        live_name=None,
        tld_id="be",
        status=DomainStatus.RELEASED,
        registered_at=now - timedelta(days=900),
        expires_at=now - timedelta(days=100),
        redemption_ends_at=now - timedelta(days=60),
        released_at=now - timedelta(days=60),
    )

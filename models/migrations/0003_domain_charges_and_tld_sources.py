from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

# DOM-3: where each TLD's values come from. Redemption periods are registry rules; restore fees
# are this provider's price list, never a registry fact. A value not checked against its registry
# says "unconfirmed". No semicolon in these texts: RunSQL splits statements on it.
FEE = "Restore fee: provider price list (not a registry fee)."
ICANN_RGP = "Redemption: ICANN Redemption Grace Period for gTLDs, 30 days."
TLD_SOURCES = [
    ("ch", 40, "Redemption: unconfirmed (no SWITCH publication checked). " + FEE),
    ("li", 40, "Redemption: unconfirmed (no SWITCH publication checked). " + FEE),
    # .swiss is a generic TLD under an ICANN registry agreement: the gTLD rule, not 40 days.
    ("swiss", 30, ICANN_RGP + " " + FEE),
    (
        "fr",
        30,
        "Redemption: AFNIC redemption period, 30 days (AFNIC naming charter, as documented by"
        " registrars, charter text not checked). " + FEE,
    ),
    (
        "be",
        40,
        "Redemption: DNS Belgium quarantine, 40 days, per registrar documentation only"
        " (registry page not checked). " + FEE,
    ),
    (
        "de",
        30,
        "Redemption: DENIC Redemption Grace Period, 30 days"
        " (https://denic.de/en/domains/de-domains/domain-deletion/redemption-grace-period). " + FEE,
    ),
    (
        "eu",
        40,
        "Redemption: EURid quarantine, 40 days, per registrar documentation"
        " (registry page not checked). " + FEE,
    ),
    ("com", 30, ICANN_RGP + " " + FEE),
    ("net", 30, ICANN_RGP + " " + FEE),
    ("org", 30, ICANN_RGP + " " + FEE),
]
PREVIOUS_DAYS = {"swiss": 40}


class Migration(migrations.Migration):
    dependencies = [('models', '0002_tld_policies')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DomainCharge',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('domain', fields.ForeignKeyField('models.Domain', source_field='domain_id', db_constraint=True, to_field='id', related_name='charges', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=16)),
                ('amount', fields.DecimalField(max_digits=10, decimal_places=2)),
                ('currency', fields.CharField(max_length=3)),
                ('charged_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('charged_by', fields.ForeignKeyField('models.User', source_field='charged_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'domain_charge', 'app': 'models', 'pk_attr': 'id', 'table_description': 'DOM-3: what a domain operation cost the organisation (a restore fee), as charged.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='TldPolicy',
            name='source',
            field=fields.TextField(db_default='unconfirmed', unique=False),
        ),
        ops.RunSQL(
            [
                (
                    "UPDATE tld_policy SET redemption_days = "
                    f"{days}, source = '{source}' WHERE tld = '{tld}'",
                    None,
                )
                for tld, days, source in TLD_SOURCES
            ],
            reverse_sql=[
                (
                    "UPDATE tld_policy SET redemption_days = "
                    f"{PREVIOUS_DAYS.get(tld, days)}, source = 'unconfirmed' WHERE tld = '{tld}'",
                    None,
                )
                for tld, days, _ in TLD_SOURCES
            ],
        ),
    ]

from tortoise import migrations
from tortoise.migrations import operations as ops

# DOM-3: redemption period and restore fee per TLD, reference data every deployment needs.
TLD_POLICIES = [
    ("ch", 40, "120.00", "CHF"),
    ("li", 40, "120.00", "CHF"),
    ("swiss", 40, "150.00", "CHF"),
    ("fr", 30, "90.00", "EUR"),
    ("be", 40, "70.00", "EUR"),
    ("de", 30, "60.00", "EUR"),
    ("eu", 40, "70.00", "EUR"),
    ("com", 30, "80.00", "USD"),
    ("net", 30, "80.00", "USD"),
    ("org", 30, "80.00", "USD"),
]


class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.RunSQL(
            [
                (
                    "INSERT INTO tld_policy (tld, redemption_days, restore_fee, currency) "
                    f"VALUES ('{tld}', {days}, '{fee}', '{currency}')",
                    None,
                )
                for tld, days, fee, currency in TLD_POLICIES
            ],
            reverse_sql=[
                (f"DELETE FROM tld_policy WHERE tld = '{tld}'", None) for tld, *_ in TLD_POLICIES
            ],
        ),
    ]

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_domain_charges_and_tld_sources')]

    initial = False

    operations = [
        ops.AddField(
            model_name='User',
            name='credential_generation',
            field=fields.IntField(default=0),
        ),
    ]

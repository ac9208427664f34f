from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_mailboxes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='User',
            name='credential_generation',
            field=fields.IntField(default=0),
        ),
    ]

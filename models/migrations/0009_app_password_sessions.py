from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

# MFA-6: an app session remembers the app password that opened it, so revoking one app password
# ends exactly its sessions.

class Migration(migrations.Migration):
    dependencies = [('models', '0008_pending_sign_ups')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Session',
            name='app_password',
            field=fields.ForeignKeyField('models.AppPassword', source_field='app_password_id', null=True, db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE),
        ),
    ]

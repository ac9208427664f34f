from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

# MFA-4: push devices authenticate with a device credential (its keyed digest is stored); an
# approval keeps the number the sign-in screen shows, its decoys, and the device that answered.

class Migration(migrations.Migration):
    dependencies = [('models', '0011_recovery_codes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='PushApproval',
            name='answered_by',
            field=fields.ForeignKeyField('models.TwoFactorMethod', source_field='answered_by_id', null=True, db_constraint=True, to_field='id', related_name='push_answers', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='PushApproval',
            name='candidate_numbers',
            field=fields.CharField(default='', max_length=16),
        ),
        ops.AddField(
            model_name='PushApproval',
            name='number',
            field=fields.SmallIntField(default=0),
        ),
        ops.AddIndex(
            model_name='PushApproval',
            index=Index(fields=['user_id', 'created_at']),
        ),
        ops.AddField(
            model_name='TwoFactorMethod',
            name='device_credential_hash',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
    ]

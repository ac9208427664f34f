from tortoise import migrations
from tortoise.migrations import operations as ops
from gardien.models.enums import RecoveryChannel
from tortoise.fields.base import OnDelete
from tortoise import fields

# REC-1, REC-2: a reset request keeps its code (as a keyed digest) and the options it offered;
# a login that matches no account gets a request without a user (a decoy). An approved
# identity-verification case keeps its one-time reset link (as a keyed digest).

class Migration(migrations.Migration):
    dependencies = [('models', '0010_security_key_ceremonies')]

    initial = False

    operations = [
        ops.AddField(
            model_name='IdentityVerificationCase',
            name='login',
            field=fields.CharField(null=True, max_length=254),
        ),
        ops.AddField(
            model_name='IdentityVerificationCase',
            name='reset_contact_email',
            field=fields.CharField(null=True, max_length=254),
        ),
        ops.AddField(
            model_name='IdentityVerificationCase',
            name='reset_expires_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='IdentityVerificationCase',
            name='reset_token_hash',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
        ops.AddField(
            model_name='IdentityVerificationCase',
            name='reset_used_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AlterModelOptions(
            name='RecoveryRequest',
            options={'table': 'recovery_request', 'app': 'models', 'pk_attr': 'id', 'table_description': 'REC-1: one forgot-password request, from the login typed in to the new password.'},
        ),
        ops.AlterField(
            model_name='RecoveryRequest',
            name='channel',
            field=fields.CharEnumField(null=True, description='LOGIN_EMAIL: LOGIN_EMAIL\nRECOVERY_EMAIL: RECOVERY_EMAIL\nSMS: SMS', enum_type=RecoveryChannel, max_length=16),
        ),
        ops.AlterField(
            model_name='RecoveryRequest',
            name='user',
            field=fields.ForeignKeyField('models.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='recovery_requests', on_delete=OnDelete.CASCADE),
        ),
        ops.AddField(
            model_name='RecoveryRequest',
            name='channels',
            field=fields.CharField(default='', max_length=64),
        ),
        ops.AddField(
            model_name='RecoveryRequest',
            name='code_expires_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='RecoveryRequest',
            name='code_hash',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='RecoveryRequest',
            name='login_digest',
            field=fields.CharField(default='', max_length=64),
        ),
    ]


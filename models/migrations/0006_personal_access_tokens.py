from tortoise import migrations
from tortoise.migrations import operations as ops
from gardien.models.enums import Role
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_credential_generation')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='ApiToken',
            options={'table': 'api_token', 'app': 'models', 'indexes': [Index(fields=['owner_id', 'revoked_at']), Index(fields=['organisation_id', 'revoked_at'])], 'pk_attr': 'id', 'table_description': 'API-6: an integrator token. With an owner it is a personal access token acting as that user'},
        ),
        ops.AddField(
            model_name='ApiToken',
            name='created_by',
            field=fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='ApiToken',
            name='last_used_ip',
            field=fields.CharField(null=True, max_length=45),
        ),
        ops.AddField(
            model_name='ApiToken',
            name='prefix',
            field=fields.CharField(default='', max_length=24),
        ),
        ops.AddField(
            model_name='ApiToken',
            name='role',
            field=fields.CharEnumField(null=True, description='LEGAL_REPRESENTATIVE: LEGAL_REPRESENTATIVE\nADMINISTRATOR: ADMINISTRATOR\nCOLLABORATOR: COLLABORATOR\nEXTERNAL: EXTERNAL', enum_type=Role, max_length=24),
        ),
        ops.AddField(
            model_name='ApiToken',
            name='use_count',
            field=fields.BigIntField(default=0),
        ),
        ops.AddIndex(
            model_name='ApiToken',
            index=Index(fields=['owner_id', 'revoked_at']),
        ),
        ops.AddIndex(
            model_name='ApiToken',
            index=Index(fields=['organisation_id', 'revoked_at']),
        ),
    ]


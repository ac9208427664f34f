from tortoise import migrations
from tortoise.migrations import operations as ops
from gardien.models.enums import SecurityKeyCeremonyPurpose
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

# MFA-2: a security-key registration or sign-in keeps its challenge server side, bound to its user
# (and sign-in challenge), short-lived and used once.

class Migration(migrations.Migration):
    dependencies = [('models', '0009_app_password_sessions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SecurityKeyCeremony',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='security_key_ceremonies', on_delete=OnDelete.CASCADE)),
                ('purpose', fields.CharEnumField(description='REGISTRATION: REGISTRATION\nSIGN_IN: SIGN_IN', enum_type=SecurityKeyCeremonyPurpose, max_length=16)),
                ('sign_in_challenge', fields.ForeignKeyField('models.SignInChallenge', source_field='sign_in_challenge_id', null=True, db_constraint=True, to_field='id', related_name='security_key_ceremonies', on_delete=OnDelete.CASCADE)),
                ('challenge', fields.CharField(max_length=128)),
                ('user_verification', fields.CharField(null=True, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'security_key_ceremony', 'app': 'models', 'indexes': [Index(fields=['user_id', 'purpose'])], 'pk_attr': 'id', 'table_description': 'MFA-2: a security-key registration or sign-in under way, kept server side.'},
            bases=['Model'],
        ),
    ]

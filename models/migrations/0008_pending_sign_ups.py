from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_webhook_delivery_status')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PendingSignUp',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('email', fields.CharField(db_index=True, max_length=254)),
                ('password_hash', fields.CharField(max_length=255)),
                ('display_name', fields.CharField(max_length=120)),
                ('language', fields.CharField(default='fr', max_length=2)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'pending_sign_up', 'app': 'models', 'pk_attr': 'id', 'table_description': 'ORG-1: a sign-up waiting for its address to be confirmed, before any account exists.'},
            bases=['Model'],
        ),
    ]

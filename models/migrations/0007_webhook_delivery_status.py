from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_personal_access_tokens')]

    initial = False

    operations = [
        ops.AddField(
            model_name='WebhookDelivery',
            name='delivered_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='WebhookDelivery',
            name='last_error',
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddIndex(
            model_name='WebhookDelivery',
            index=Index(fields=['status', 'next_attempt_at']),
        ),
        ops.AddField(
            model_name='WebhookEndpoint',
            name='failing_since',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]

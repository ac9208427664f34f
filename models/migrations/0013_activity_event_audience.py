from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

# ACT-4, EVT-2: the organisations that see an event are stored when it is recorded. Existing
# events get the audience the rule gave them until now: their own organisation, and for a
# member's account security events (the families below, as resolvers/activity_log.py named them
# when this migration was written), the organisations the member belongs to today.
_ACCOUNT_SECURITY = " OR ".join(
    [
        f"substr(e.type, 1, {len(prefix)}) = '{prefix}'"
        for prefix in (
            "sign_in.",
            "two_factor.",
            "backup_codes.",
            "security_key.",
            "app_password.",
            "password.",
            "recovery.",
            "login_email.",
            "recovery_email.",
            "recovery_phone.",
        )
    ]
    + [
        "e.type IN ('account.secured', 'account.sign_up_attempted',"
        " 'account.password_check_failed')"
    ]
)


class Migration(migrations.Migration):
    dependencies = [('models', '0012_push_approvals')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ActivityEventAudience',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event', fields.ForeignKeyField('models.ActivityEvent', source_field='event_id', db_constraint=True, to_field='id', related_name='audience', on_delete=OnDelete.CASCADE)),
                ('organisation', fields.ForeignKeyField('models.Organisation', source_field='organisation_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'activity_event_organisation', 'app': 'models', 'unique_together': (('organisation', 'event'),), 'pk_attr': 'id', 'table_description': 'ACT-4, EVT-2: an organisation whose managers see the event, decided when it is recorded.'},
            bases=['Model'],
        ),
        # Who sees a member's account event is read from their memberships when it is recorded.
        ops.AddIndex(
            model_name='Membership',
            index=Index(fields=['user_id']),
        ),
        ops.RunSQL(
            [
                "INSERT INTO activity_event_organisation (event_id, organisation_id)"
                " SELECT e.id, e.organisation_id FROM activity_event e"
                " WHERE e.organisation_id IS NOT NULL",
                "INSERT INTO activity_event_organisation (event_id, organisation_id)"
                " SELECT e.id, m.organisation_id FROM activity_event e"
                " JOIN membership m ON m.user_id = e.subject_id"
                f" WHERE e.organisation_id IS NULL AND ({_ACCOUNT_SECURITY})",
            ],
            reverse_sql="DELETE FROM activity_event_organisation",
        ),
    ]

import uuid

from django.db import migrations, models


def give_each_recharge_its_own_uuid(apps, schema_editor):
    # A column default would give every existing row the same value: one at a time instead.
    Recharge = apps.get_model("billing", "Recharge")
    for pk in Recharge.objects.filter(uuid__isnull=True).values_list("pk", flat=True):
        Recharge.objects.filter(pk=pk).update(uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_saved_cards_auto_recharge")]

    operations = [
        migrations.AddField(model_name="recharge", name="uuid", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(give_each_recharge_its_own_uuid, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="recharge", name="uuid",
            field=models.UUIDField(default=uuid.uuid4, unique=True, editable=False),
        ),
    ]

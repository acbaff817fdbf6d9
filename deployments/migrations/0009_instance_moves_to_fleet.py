# The Instance model moved to the fleet app (fleet/migrations/0001_initial.py) with its table
# unchanged: Django's state only, nothing in the database changes.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0008_readable_status_labels'),
        ('fleet', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='deploymentevent',
                    name='instance',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='fleet.instance'),
                ),
                migrations.DeleteModel(
                    name='Instance',
                ),
            ],
            database_operations=[],
        ),
    ]

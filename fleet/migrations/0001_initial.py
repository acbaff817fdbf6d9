# The Instance model moves from the deployments app to the fleet app (issue 13). Its table stays
# where it is (db_table deployments_instance): this migration changes Django's state only.

import django.db.models.deletion
import django.utils.timezone
import fleet.models
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('catalog', '0002_provider'),
        ('deployments', '0008_readable_status_labels'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Instance',
                    fields=[
                        ('id', models.CharField(default=fleet.models.new_instance_id, editable=False, max_length=40, primary_key=True, serialize=False)),
                        ('state', models.CharField(choices=[('waiting_for_capacity', 'Waiting for capacity'), ('provisioning', 'Provisioning'), ('loading', 'Loading'), ('ready', 'Ready'), ('draining', 'Draining'), ('crash_looping', 'Crash looping'), ('terminating', 'Terminating'), ('terminated', 'Terminated'), ('failed', 'Failed')], default='provisioning', max_length=22)),
                        ('provider', models.CharField(blank=True, max_length=40)),
                        ('provider_instance_id', models.CharField(blank=True, max_length=200)),
                        ('tag', models.CharField(max_length=100)),
                        ('api_key', models.CharField(help_text="The engine's secret; only the platform calls it", max_length=100)),
                        ('endpoint_url', models.CharField(blank=True, max_length=300)),
                        ('hourly_price_micros', models.BigIntegerField(default=0)),
                        ('hourly_cost_micros', models.BigIntegerField(default=0)),
                        ('drain_started_at', models.DateTimeField(blank=True, help_text='Left routing to be replaced', null=True)),
                        ('failure_reason', models.CharField(blank=True, max_length=500)),
                        ('launch_attempts', models.PositiveIntegerField(default=0)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('launched_at', models.DateTimeField(blank=True, help_text='Provider accepted the launch: billing starts', null=True)),
                        ('ready_at', models.DateTimeField(blank=True, null=True)),
                        ('terminated_at', models.DateTimeField(blank=True, help_text='Provider confirmed: billing stops', null=True)),
                        ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='instances', to='deployments.deployment')),
                        ('gpu_type', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.gputype')),
                        ('preset', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.preset')),
                    ],
                    options={
                        'db_table': 'deployments_instance',
                        'indexes': [models.Index(fields=['state'], name='deployments_state_bcc22f_idx'), models.Index(fields=['provider', 'provider_instance_id'], name='deployments_provide_0c852c_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]

# Scoped API keys and their deployment grants.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import accounts.models


def deployment_keys_are_scoped(apps, schema_editor):
    """Deployment keys were always limited to their deployment; the new flag says so."""
    apps.get_model("accounts", "ApiKey").objects.filter(kind="deployment").update(scoped=True)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_activityevent'),
        ('deployments', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='apikey',
            name='scoped',
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(deployment_keys_are_scoped, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='apikey',
            constraint=models.CheckConstraint(condition=models.Q(('kind', 'account'), ('scoped', True), _connector='OR'), name='apikey_deployment_keys_scoped'),
        ),
        migrations.CreateModel(
            name='KeyGrant',
            fields=[
                ('id', models.CharField(default=accounts.models.new_grant_id, editable=False, max_length=40, primary_key=True, serialize=False)),
                ('role', models.CharField(choices=[('inference', 'Inference')], default='inference', max_length=12)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='key_grants', to='deployments.deployment')),
                ('key', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='grants', to='accounts.apikey')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('key', 'deployment'), name='keygrant_one_per_key_deployment')],
            },
        ),
    ]

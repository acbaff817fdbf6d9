# SSH public keys of an organization, for the pods it launches.

import django.db.models.deletion
import django.utils.timezone
import gpucloud.core.ids
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_key_scopes_and_grants'),
    ]

    operations = [
        migrations.CreateModel(
            name='SshKey',
            fields=[
                ('id', models.CharField(default=gpucloud.core.ids.new_ssh_key_id, editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('public_key', models.TextField()),
                ('fingerprint', models.CharField(max_length=60)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='ssh_keys', to=settings.AUTH_USER_MODEL)),
                ('org', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='ssh_keys', to='accounts.organization')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('org', 'fingerprint'), name='sshkey_one_per_org_fingerprint')],
            },
        ),
    ]

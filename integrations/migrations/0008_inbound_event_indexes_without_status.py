from django.db import migrations, models

# The partner queues swing from nothing pending to a backlog within seconds. Statistics taken
# before such a burst tell the planner that no row is pending, and it then walks the whole
# backlog for every claim; so autovacuum analyzes them after a fixed number of changed rows
# (checked every minute), not after a tenth of the table as it does by default.
QUEUE_TABLES = ["integrations_inboundevent", "integrations_outboundmessage"]
FRESH_STATISTICS = "".join(
    f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000);"
    for table in QUEUE_TABLES
)
DEFAULT_STATISTICS = "".join(
    f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);"
    for table in QUEUE_TABLES
)


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0007_outbound_last_delivered_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='inboundevent',
            name='order_number',
            field=models.CharField(blank=True, default='', max_length=40),
        ),
        migrations.AlterField(
            model_name='inboundevent',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('processed', 'Processed'), ('failed', 'Failed'), ('ignored', 'Ignored')], default='pending', max_length=10),
        ),
        migrations.AlterField(
            model_name='inboundevent',
            name='subject_key',
            field=models.CharField(help_text='Events of one subject run in order', max_length=100),
        ),
        migrations.AlterField(
            model_name='inboundevent',
            name='type',
            field=models.CharField(max_length=60),
        ),
        migrations.AddIndex(
            model_name='inboundevent',
            index=models.Index(condition=models.Q(('status', 'failed')), fields=['received_at', 'id'], name='inbound_event_failed_idx'),
        ),
        migrations.AddIndex(
            model_name='inboundevent',
            index=models.Index(fields=['subject_key'], name='inbound_event_subject_idx'),
        ),
        migrations.AddIndex(
            model_name='inboundevent',
            index=models.Index(fields=['type'], name='inbound_event_type_idx'),
        ),
        migrations.AddIndex(
            model_name='inboundevent',
            index=models.Index(fields=['order_number'], name='inbound_event_order_idx'),
        ),
        migrations.RunSQL(FRESH_STATISTICS, DEFAULT_STATISTICS),
    ]

"""Order and shipment numbers come from database sequences: unique across processes, no gaps by retry."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS orchestration_order_number_seq START 100001;"
            "CREATE SEQUENCE IF NOT EXISTS orchestration_shipment_number_seq START 500001;",
            "DROP SEQUENCE IF EXISTS orchestration_order_number_seq;"
            "DROP SEQUENCE IF EXISTS orchestration_shipment_number_seq;",
        )
    ]

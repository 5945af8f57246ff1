"""What the queue API shows of a case: flat, ids and codes, the SLA state as people see it."""

from __future__ import annotations

from rest_framework import serializers

from exceptions.models import Case


class CaseRowSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="type.code")
    type_name = serializers.CharField(source="type.name")
    queue = serializers.SerializerMethodField()
    warehouse = serializers.SerializerMethodField()
    assignee = serializers.SerializerMethodField()
    sla = serializers.SerializerMethodField()
    url = serializers.CharField(source="get_absolute_url")

    class Meta:
        model = Case
        fields = [
            "id",
            "url",
            "type",
            "type_name",
            "queue",
            "status",
            "severity",
            "priority",
            "summary",
            "subject_type",
            "subject_id",
            "subject_label",
            "order_number",
            "warehouse",
            "assignee",
            "occurrences",
            "sla",
            "sla_state",
            "first_response_due_at",
            "resolution_due_at",
            "created_at",
            "updated_at",
        ]

    def get_queue(self, case) -> str:
        return self.context["queue"].code

    def get_warehouse(self, case) -> str:
        return case.warehouse.code if case.warehouse_id else ""

    def get_assignee(self, case) -> str:
        return case.assignee.username if case.assignee_id else ""

    def get_sla(self, case) -> str:
        from exceptions.selectors import sla_state

        return sla_state(case, self.context["now"])


class QueueSummarySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    last_seq = serializers.IntegerField()
    open = serializers.IntegerField()
    breached = serializers.IntegerField()
    at_risk = serializers.IntegerField()
    paused = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    ages = serializers.ListField(child=serializers.DictField())


class QueueChangeSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    case_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["added", "updated", "removed"])
    status = serializers.CharField()
    at = serializers.DateTimeField()


class QueueChangesSerializer(serializers.Serializer):
    queue = serializers.CharField()
    last_seq = serializers.IntegerField()
    changes = QueueChangeSerializer(many=True)
    has_more = serializers.BooleanField()


class QueueCasesPageSerializer(serializers.Serializer):
    queue = serializers.CharField()
    last_seq = serializers.IntegerField(help_text="The queue's change sequence when the page was read")
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = CaseRowSerializer(many=True)


class QueueListSerializer(serializers.Serializer):
    results = QueueSummarySerializer(many=True)

"""Benchmark-only endpoint (routed only when BENCH_ENDPOINTS=1): the framework ceiling for order intake.

One DRF view doing one raw reservation in SQL — the conditional UPDATE every reservation
is built around — so ``bench/bench_api.py`` can set the cost of a full order against the
cost of the framework plus one guarded write.
"""

from __future__ import annotations

import random

from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

RESERVE_ONE_SQL = """
UPDATE inventory_stocklevel SET reserved = reserved + 1
WHERE id = %s AND on_hand - reserved - quarantined >= 1
RETURNING id
"""


@extend_schema(exclude=True)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
def reserve_one(request):
    low = int(request.query_params.get("low", "1"))
    high = int(request.query_params.get("high", str(low)))
    with connection.cursor() as cursor:
        cursor.execute(RESERVE_ONE_SQL, [random.randint(low, high)])
        row = cursor.fetchone()
    return Response({"reserved": 1 if row else 0}, status=201 if row else 409)

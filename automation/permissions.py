"""Model permissions per role (operations admin gets every automation permission already)."""

from portal.roles import Role

ROLE_PERMISSIONS = {
    Role.WAREHOUSE_SUPERVISOR: ["view_equipment", "view_equipmentfault", "view_handoff", "view_recommendation"],
    Role.CUSTOMER_SERVICE: ["view_recommendation"],
}

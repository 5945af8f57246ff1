from portal.navigation import items_for
from portal.roles import roles_of


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_roles": []}
    roles = sorted(roles_of(user), key=lambda role: role.label)
    return {"nav_items": items_for(user), "user_roles": roles}

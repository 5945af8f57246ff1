"""Request checks that every page needs before any view runs."""

from __future__ import annotations

from django.shortcuts import render

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(request) -> bool:
    if "\x00" in request.path:
        return True
    params = [request.GET]
    if request.method == "POST" and request.content_type in FORM_TYPES:
        params.append(request.POST)
    return any(
        "\x00" in key or any("\x00" in value for value in values) for query in params for key, values in query.lists()
    )


class RefuseNulCharactersMiddleware:
    """A NUL character in a page's address or form is refused with a 400 before any view sees it.

    No text column can store one, so a filter or a reason containing it would otherwise end in a
    database error (a 500). The partner API checks its own input and answers in its error format.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/") and _has_nul(request):
            return render(
                request, "portal/bad_characters.html", {"path": request.path.replace("\x00", "\ufffd")}, status=400
            )
        return self.get_response(request)

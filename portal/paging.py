"""Paging for the portal's list pages: the page a request asks for, and what the page links and size picker need."""

from __future__ import annotations

from django.core.paginator import Paginator

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50


def page_size(request) -> int:
    """The ?size= the request asks for when it is one of PAGE_SIZES, else the default."""
    try:
        size = int(request.GET.get("size", DEFAULT_PAGE_SIZE))
    except (TypeError, ValueError):
        return DEFAULT_PAGE_SIZE
    return size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE


def paginate(request, rows) -> dict:
    """Context for a list page: `page` of `rows`, its `size`, the `page_sizes` to pick from and the `querystring`
    (the request's filters less the page number) that portal/_pagination.html keeps in its links."""
    size = page_size(request)
    page = Paginator(rows, size).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {"page": page, "size": size, "page_sizes": PAGE_SIZES, "querystring": query.urlencode()}

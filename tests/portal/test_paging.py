"""The list pages' paging helper: a size from the allowed list, and links that keep the filters."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from portal.paging import DEFAULT_PAGE_SIZE, page_size, paginate


@pytest.mark.parametrize(
    "query, size",
    [("", DEFAULT_PAGE_SIZE), ("size=25", 25), ("size=200", 200), ("size=7", DEFAULT_PAGE_SIZE), ("size=x", 50)],
)
def test_a_page_size_is_one_of_the_offered_sizes(query, size):
    assert page_size(RequestFactory().get(f"/?{query}")) == size


def test_the_page_links_keep_the_filters_but_not_the_page():
    request = RequestFactory().get("/?status=open&page=3&size=25&q=a%26b")

    paging = paginate(request, list(range(100)))

    assert (paging["page"].number, list(paging["page"].object_list)[:2], paging["size"]) == (3, [50, 51], 25)
    assert paging["querystring"] == "status=open&size=25&q=a%26b"


def test_a_page_past_the_end_or_not_a_number_shows_a_real_page():
    assert paginate(RequestFactory().get("/?page=99"), list(range(60)))["page"].number == 2
    assert paginate(RequestFactory().get("/?page=last-one"), list(range(60)))["page"].number == 1

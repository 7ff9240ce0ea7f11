"""What a page view adds: one view to its page, the URL's path."""

from __future__ import annotations

from agents.page_views import page_of, page_view_increments
from streams.records import ClickType
from tests.builders import make_click


def test_a_page_is_its_url_path():
    assert page_of("/p/42?utm_source=mail#top") == "/p/42"
    assert page_of("?utm_source=ads") == "/"


def test_only_page_views_add_views():
    assert page_view_increments(make_click(url="/c/books?q=x")) == (("/c/books", (1,)),)
    assert page_view_increments(make_click(type=ClickType.ADD_TO_CART)) == ()

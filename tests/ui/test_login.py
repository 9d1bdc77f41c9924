"""Logins in the browser: a wrong password gets nothing, and each user sees only their own history."""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from page.access import Logins, add_user
from tests.ui.conftest import SCREENSHOTS, VIEWPORT, serve
from tests.ui.helpers import PARAGRAPH, type_document

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def login_url(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("login")
    for name in ("ann", "bob"):
        add_user(folder / "users", name, f"{name}-password", iterations=1_000)
    with serve(model, folder, auth=Logins(folder / "users")) as url:
        yield url


@contextmanager
def logged_in(browser, url: str, name: str, password: str):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.goto(url)
    pg.get_by_label("username").fill(name)
    pg.get_by_label("password").fill(password)
    pg.get_by_role("button", name="Login").click()
    try:
        yield pg
    finally:
        context.close()


def save(pg, text: str, name: str) -> None:
    type_document(pg, text)
    pg.fill("#doc-name textarea, #doc-name input", name)
    pg.get_by_role("button", name="Save", exact=True).click()
    pg.wait_for_selector("#message :text('Saved as revision')")


def test_a_wrong_password_gets_no_page(browser, login_url):
    with logged_in(browser, login_url, "ann", "bob-password") as pg:
        pg.wait_for_selector("text=Incorrect Credentials")
        assert pg.locator("#document").count() == 0


def test_each_user_sees_only_their_own_history(browser, login_url):
    with logged_in(browser, login_url, "ann", "ann-password") as ann:
        ann.wait_for_selector("body[data-sharpen-ready]")
        save(ann, PARAGRAPH, "ann.txt")
        save(ann, PARAGRAPH + " Ann's second line.", "ann.txt")
        ann.wait_for_selector("#history li.rev >> nth=1")
    with logged_in(browser, login_url, "bob", "bob-password") as bob:
        bob.wait_for_selector("body[data-sharpen-ready]")
        assert bob.locator("#history li.rev").count() == 0
        save(bob, "Bob's own words.", "bob.txt")
        bob.wait_for_selector("#history li.rev")
        assert bob.locator("#history li.rev").count() == 1  # his one revision, none of ann's two
        bob.click("#rev-b input")
        options = bob.get_by_role("option").all_inner_texts()
        assert len(options) == 1, options
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        bob.screenshot(path=str(SCREENSHOTS / "login-bob.png"))

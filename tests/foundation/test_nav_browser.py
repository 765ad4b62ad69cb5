"""The navigation bar in a real browser: at every common width it either fits on one line with "Sign out" on screen,
or folds behind its menu button (it used to wrap "Training runs" and push "Sign out" off a 1024 px screen)."""

import os

import pytest

from tests.conftest import log_in

SHOTS = "var/screenshots"

LAYOUT = """() => {
  const signOut = document.querySelector('nav form[action$="/logout/"] button').getBoundingClientRect();
  const links = [...document.querySelectorAll('nav .navbar-nav .nav-link')].map(a => a.getBoundingClientRect());
  const toggler = document.querySelector('nav .navbar-toggler');
  return {
    folded: getComputedStyle(toggler).display !== 'none',
    signOutVisible: signOut.width > 0 && signOut.left >= 0 && signOut.right <= document.documentElement.clientWidth,
    wrapped: links.filter(r => r.height > 0 && Math.round(r.height) > Math.round(links[0].height)).length,
  };
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_nav_fits_or_folds_at_every_width(open_browser, live_server, make_user):
    # Given an admin, who sees every entry of the navigation (Admin included)
    make_user("boss", "admin")
    os.makedirs(SHOTS, exist_ok=True)
    page = open_browser()
    log_in(page, live_server, "boss")
    page.goto(f"{live_server.url}/")

    bad = {}
    for width in range(360, 1930, 8):
        # When the window is this wide
        page.set_viewport_size({"width": width, "height": 700})
        layout = page.evaluate(LAYOUT)
        if width in (1024, 1280):
            page.screenshot(path=f"{SHOTS}/nav-{width}.png")
        # Then the nav is folded behind its button, or unfolded with no link wrapped and "Sign out" on screen
        if not layout["folded"] and (layout["wrapped"] or not layout["signOutVisible"]):
            bad[width] = layout
    assert bad == {}

    # And folded, its button opens it with "Sign out" on screen
    page.set_viewport_size({"width": 1024, "height": 700})
    assert page.evaluate(LAYOUT)["folded"]
    page.click("nav .navbar-toggler")
    page.wait_for_selector("nav .navbar-collapse.show")
    assert page.evaluate(LAYOUT)["signOutVisible"]
    assert not page.js_errors

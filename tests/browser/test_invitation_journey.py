"""Issue 14 §3 in a real browser (Debian's Chromium driven by Playwright) against `make run`'s server:
a signed-out visitor's landing page, then an invitation: alice invites erin from the organization
page; erin opens the emailed link, finds her address filled in, signs up, and lands in alice's
organization with a notice. Screenshots (desktop and phone) go to test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import SHOTS, chromium, needs_chromium
from tests.support.embedded import PASSWORD, Embedded, embedded_server, mail_matching, manage, wait_for

SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
ORG = "Alice's Research Lab of Unusually Long Name"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Embedded]:
    with embedded_server(tmp_path) as embedded:
        yield embedded


@pytest.fixture
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def shoot(page: object, name: str) -> None:
    """The page at both widths, and it never scrolls sideways at a phone's width."""
    for label, size in SIZES.items():
        page.set_viewport_size(size)  # type: ignore[attr-defined]
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)  # type: ignore[attr-defined]
        width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert width <= size["width"], f"{name} is {width}px wide at {size['width']}px"
    page.set_viewport_size(SIZES["desktop"])  # type: ignore[attr-defined]


def test_landing_then_an_invitee_signs_up_from_the_link_into_the_org(server: Embedded, browser: object) -> None:
    created = manage(["create_user", "alice@example.com", "--password", PASSWORD, "--org", ORG], server.var_dir)
    assert created.returncode == 0, created.stderr
    visitor = browser.new_context(viewport=SIZES["desktop"])  # type: ignore[attr-defined]
    page = visitor.new_page()
    page.goto(server.base + "/")
    assert "Deploy AI models in one click" in page.inner_text("main")
    assert "CPU (this machine)" in page.inner_text(".landing-prices") and "$0.05" in page.inner_text(".landing-prices")
    shoot(page, "landing")

    page.click("main a:has-text('Sign in')")
    page.fill("input[name=login]", "alice@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("main [type=submit]")
    page.wait_for_url("**/dashboard/")
    with page.expect_navigation():
        page.select_option("#org-switch", label=f"{ORG} (owner)")
    whole = page.evaluate(
        "(() => { const s = document.querySelector('#org-switch'); return s.scrollWidth <= s.clientWidth; })()"
    )
    assert whole, "the organization switcher cuts the name"
    page.goto(server.base + "/organization/")
    page.fill("input[name=email]", "erin@example.com")
    page.click("form[action='/organization/invite'] [type=submit]")
    assert "Invitation sent to erin@example.com" in page.inner_text("main")
    page.reload()  # a reload after the post shows the page again, no error
    assert page.url.endswith("/organization/") and "Invitation sent" not in page.inner_text("main")
    visitor.close()

    link = wait_for(lambda: mail_matching(server.var_dir, r"http://[^\s]+(/invitations/[^\s]+/)"), 15, "the invitation")
    invitee = browser.new_context(viewport=SIZES["desktop"])  # type: ignore[attr-defined]
    page = invitee.new_page()
    page.goto(server.base + link.group(1))
    page.wait_for_url("**/accounts/signup/")
    assert page.input_value("input[name=email]") == "erin@example.com"
    assert f"Create your account to join {ORG}" in page.inner_text("main")
    shoot(page, "invitation-signup")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main [type=submit]")
    page.wait_for_url("**/dashboard/")
    assert f"Welcome to {ORG}: you joined as member" in page.inner_text("main")
    assert page.eval_on_selector("#org-switch", "s => s.options[s.selectedIndex].text") == f"{ORG} (member)"
    shoot(page, "invitation-joined")
    invitee.close()

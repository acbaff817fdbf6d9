"""A new user's journey in a real browser (Debian's Chromium driven by Playwright) against `make run`'s
server: sign up, verify, sign in, get credit, deploy SmolLM2 from the catalog, watch it become active
without reloading, chat with the values the page gives, see the cost tick, stop it. Every page is
saved as a screenshot under test-artifacts/screenshots/ (desktop and phone widths) for a person to
look at; keyboard focus and the no-JavaScript fallbacks are checked on the way."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.browser import SHOTS, chromium, needs_chromium
from tests.support.embedded import PASSWORD, Embedded, embedded_server, engines, mail_matching, manage, wait_for

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
EMAIL = "journey@example.com"

pytestmark = [
    pytest.mark.e2e,
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
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def dollars(text: str) -> float:
    match = re.search(r"(-?)\$([\d,]+\.\d+)", text)
    assert match, f"no amount in {text!r}"
    return float(match.group(2).replace(",", "")) * (-1 if match.group(1) else 1)


@pytest.mark.slow
def test_sign_up_to_deploy_chat_and_stop_in_a_browser(server: Embedded, browser: object) -> None:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Sign up, then verify from the mail the server wrote under var/mail/.
    page.goto(f"{server.base}/accounts/signup/")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    shoot(page, "01-signup")
    page.click("form [type=submit]")
    page.wait_for_url("**/accounts/confirm-email/")
    link = wait_for(lambda: mail_matching(server.var_dir, r"http://[^\s]+(/accounts/confirm-email/[^\s]+/)"), 15,
                    "the verification mail")  # fmt: skip
    page.goto(server.base + link.group(1))
    shoot(page, "02-verify")
    page.click("form [type=submit]")
    page.wait_for_url("**/dashboard/")

    # Sign out and back in, as a returning user does.
    page.click("text=Sign out")
    page.click("form [type=submit]")
    page.wait_for_url("**/accounts/login/")
    page.fill("input[name=login]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    shoot(page, "03-sign-in")
    page.click("form [type=submit]")
    page.wait_for_url("**/dashboard/")

    # The operator grants credit; the dashboard shows it.
    granted = manage(["grant_credit", EMAIL, "5", "--reason", "journey"], server.var_dir)
    assert granted.returncode == 0, granted.stderr
    page.reload()
    assert dollars(page.inner_text(".header-balance")) == 5.0
    assert "Credit from the operator" in page.inner_text("#activity-h + ul")
    shoot(page, "04-dashboard-empty")
    watcher = context.new_page()  # a second tab left on the dashboard: the new deployment appears there live
    watcher.goto(f"{server.base}/dashboard/")
    watcher.wait_for_timeout(500)  # its socket joins the org's group

    # Deploy SmolLM2 from the catalog with the suggested GPU.
    page.click("nav >> text=Catalog")
    shoot(page, "05-catalog")
    page.fill("#catalog-search", "smol")
    # The search swaps the list in place: only matching models, under their categories' headings.
    page.wait_for_function(
        "[...document.querySelectorAll('#models article h3')].map(h => h.textContent)"
        ".every(name => /smol/i.test(name)) && document.querySelectorAll('#models article').length > 0"
    )
    assert page.locator("#models #models").count() == 0  # replaced, not nested inside the old list
    shoot(page, "05-catalog-search")
    page.click("text=SmolLM2 135M Instruct")
    page.wait_for_url("**/catalog/smollm2-135m-instruct/")
    shoot(page, "06-model")
    page.fill("#deploy-replicas", "2")  # the estimate follows the form before anything launches
    assert "$0.10/hr ($2.40/day) for 2 replicas" in page.inner_text("#deploy-estimate")
    page.fill("#deploy-replicas", "1")
    page.click("button:has-text('Deploy')")
    page.wait_for_url(re.compile(r".*/deployments/dep_\w+/$"))
    deployment_id = page.url.rstrip("/").rsplit("/", 1)[1]
    badge = f"#status-{deployment_id}"
    shoot(page, "07-deployment-provisioning")

    # Active without a reload: the badge is swapped in by the websocket push.
    started = time.monotonic()
    page.wait_for_function(f"document.querySelector('{badge}').textContent.trim() === 'Active'", timeout=120_000)
    print(f"\nactive {time.monotonic() - started:.1f} s after deploying, shown live")
    page.wait_for_function("!document.getElementById('logs').textContent.includes('Connecting')")
    watcher.wait_for_function(
        f"document.querySelector('#dashboard-live {badge}')?.textContent.trim() === 'Active'", timeout=10_000
    )
    # The badge is swapped in by the push itself; the stats follow when the block re-reads itself
    # 500 ms after the last change (hx-trigger delay), so wait for them rather than read at once.
    watcher.wait_for_function(
        "document.querySelectorAll('#dashboard-live .stat-value')[1]?.textContent.trim() === '1'", timeout=10_000
    )  # active deployments
    watcher.close()

    # Chat with the quick-start values: a deployment key made on the page, its base URL and model.
    page.click("button:has-text('Create a deployment key')")
    key = page.inner_text("#new-key").strip()
    base_url, model = page.inner_text("#base-url").strip(), page.inner_text("#model-name").strip()
    assert f'api_key="{key}"' in page.inner_text("#snippet-python")
    page.click("button[data-copy='#snippet-python']")
    assert key in page.evaluate("navigator.clipboard.readText()")
    reply = openai.OpenAI(base_url=base_url, api_key=key, timeout=60, max_retries=0).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12
    )
    assert reply.choices[0].message.content and reply.choices[0].message.content.strip()

    # Without a reload: in the replica's first minute (billed at launch) the running cost and the
    # balance stand still; past it the cost rises and the balance falls by the second. The runtime
    # counts up either way (tests/browser/test_tickers.py watches both phases of one replica).
    cost, balance = f"#cost-{deployment_id}", ".header-balance"
    minute_used_up_ms = page.evaluate(f"JSON.parse(document.querySelector('{cost}').dataset.sessions)[0][1]")
    first_cost, first_balance = dollars(page.inner_text(cost)), dollars(page.inner_text(balance))
    first_runtime = page.inner_text(".runtime")
    page.wait_for_timeout(2500)
    if page.evaluate("Date.now()") < minute_used_up_ms + 1000:  # not a whole second past it yet
        assert (dollars(page.inner_text(cost)), dollars(page.inner_text(balance))) == (first_cost, first_balance)
    else:
        assert dollars(page.inner_text(cost)) > first_cost
        assert dollars(page.inner_text(balance)) < first_balance
    assert page.inner_text(".runtime") != first_runtime
    page.wait_for_function("document.getElementById('logs').textContent.includes('|')")  # engine lines streamed
    shoot(page, "08-deployment-active")

    page.click("nav >> text=Dashboard")
    assert page.inner_text(badge).strip() == "Active"
    shoot(page, "09-dashboard-running")
    for path, name in [("/deployments/", "10-deployments"), ("/billing/", "11-billing"),
                       ("/api-keys/", "12-api-keys"), ("/organization/", "13-organization")]:  # fmt: skip
        page.goto(server.base + path)
        shoot(page, name)

    _check_phone_and_keyboard(browser, context, server, deployment_id)
    _check_without_javascript(browser, context, server, deployment_id)

    # Stop: asked first, then the status follows live to stopped and the engine is gone.
    page.goto(f"{server.base}/deployments/{deployment_id}/")
    page.click("text=Stop…")
    shoot(page, "16-stop-confirm")
    page.click("button:has-text('Stop the deployment')")
    page.wait_for_function(f"document.querySelector('{badge}').textContent.trim() === 'Stopped'", timeout=60_000)
    shoot(page, "17-deployment-stopped")
    wait_for(lambda: engines() == [], 30, "the engine to exit")
    assert errors == [], f"JavaScript errors on the pages: {errors}"


def _check_phone_and_keyboard(browser: object, desktop: object, server: Embedded, deployment_id: str) -> None:
    """At a phone's width nothing spills sideways; the keyboard reaches the skip link first and
    focus is visible."""
    phone = browser.new_context(viewport=PHONE, storage_state=desktop.storage_state())  # type: ignore[attr-defined]
    page = phone.new_page()
    pages = [("/dashboard/", "14-phone-dashboard"), (f"/deployments/{deployment_id}/", "15-phone-deployment")]
    others = ["/catalog/", "/catalog/smollm2-135m-instruct/", "/deployments/", "/billing/", "/api-keys/",
              "/organization/"]  # fmt: skip
    for path, name in [*[(p, "") for p in others], *pages]:  # the deployment page last: the keyboard walks it
        page.goto(server.base + path)
        if name:
            shoot(page, name)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    # Every control the keyboard reaches on the deployment page shows where focus is.
    unmarked = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const e = document.activeElement, s = getComputedStyle(e);"
            " return [e.tagName + ' ' + (e.textContent || '').trim().slice(0, 30),"
            " s.outlineStyle, s.outlineWidth]; })()"
        )
        if focused[1] in ("", "none") or focused[2] == "0px":
            unmarked.append(focused[0])
    assert unmarked == [], f"focus is invisible on: {unmarked}"
    phone.close()


def _check_without_javascript(browser: object, desktop: object, server: Embedded, deployment_id: str) -> None:
    """Without JavaScript the pages still show the truth and the values to connect with."""
    plain = browser.new_context(java_script_enabled=False, storage_state=desktop.storage_state())  # type: ignore[attr-defined]
    page = plain.new_page()
    page.goto(f"{server.base}/deployments/{deployment_id}/")
    assert page.inner_text(f"#status-{deployment_id}").strip() == "Active"
    assert "chat/completions" in page.inner_text("#snippet-curl")
    page.goto(f"{server.base}/deployments/{deployment_id}/logs")
    assert page.locator("body").inner_text().startswith("== ")
    plain.close()

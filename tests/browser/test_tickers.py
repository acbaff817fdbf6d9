"""The live cost and balance in a real browser (Debian's Chromium, against Django's test server with
a deployment made in the test's database): a replica's first charge bills its 60-second minimum,
so during that minute neither figure moves; once it is used up the cost rises by the second, never
past what metering bills at that moment. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing.models import UsageMeter
from billing.selectors import balance_ticker
from deployments.selectors import deployment_row
from fleet.models import Instance
from tests.support.billing import fund
from tests.support.browser import SHOTS, chromium, needs_chromium
from tests.support.pages import running, session_of
from tests.support.personas import Persona

pytestmark = [pytest.mark.slow, needs_chromium, pytest.mark.django_db(transaction=True)]

# The page loads and is read for 3 s well inside the minute, even on a busy machine, and the minute's
# end comes soon after (the test waits for it).
LAUNCHED_AGO = timedelta(seconds=48)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs its own event loop in this thread, which Django takes for an async
    # context; the test's ORM calls are plain synchronous ones, made between the browser's steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as browser:
        yield browser


def micros(text: str) -> int:
    match = re.search(r"(-?)\$(\d+)\.(\d+)", text)
    assert match, f"no amount in {text!r}"
    return (int(match.group(2)) * 1_000_000 + int(match.group(3).ljust(6, "0"))) * (-1 if match.group(1) else 1)


def test_the_cost_and_balance_stand_still_in_the_first_minute_then_follow_the_bill(
    alice: Persona, catalog: None, live_server: Any, browser: Any
) -> None:
    fund(alice.org, 5_000_000)
    deployment = running(alice)
    launched = timezone.now() - LAUNCHED_AGO
    Instance.objects.filter(deployment=deployment).update(launched_at=launched)
    UsageMeter.objects.filter(org=alice.org).update(started_at=launched, billed_seconds=60, billed_micros=60_000)
    context = browser.new_context(viewport={"width": 1280, "height": 1300})
    context.add_cookies([{"name": "sessionid", "value": session_of(alice), "url": live_server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/deployments/{deployment.pk}/")
    cost, balance = f"#cost-{deployment.pk}", ".header-balance .balance"

    seen = set()
    for _ in range(6):  # three seconds inside the minute its launch billed
        seen.add((page.inner_text(cost), page.inner_text(balance)))
        page.wait_for_timeout(500)
    assert timezone.now() - launched < timedelta(seconds=60), "the page took too long to load"
    assert seen == {("$0.06", "$5.00")}  # the minute at $3.60/h; the balance as funded (no other session)
    page.screenshot(path=str(SHOTS / "ticker-first-minute.png"))  # the header and the cost, not the whole page

    page.wait_for_function(f"document.querySelector('{cost}').textContent !== '$0.06'", timeout=40_000)
    page.wait_for_timeout(2_000)
    shown_cost, shown_balance = micros(page.inner_text(cost)), micros(page.inner_text(balance))
    deployment.refresh_from_db()
    billed = deployment_row(deployment).accrued_micros  # what metering bills now, later than the reading
    available = balance_ticker(alice.org).available_micros
    assert 60_000 < shown_cost <= billed and billed - shown_cost <= 3_000  # within seconds of the bill
    assert 5_000_000 > shown_balance >= available and shown_balance - available <= 3_000
    page.screenshot(path=str(SHOTS / "ticker-after-first-minute.png"))  # the header and the cost, not the whole page
    assert errors == [], f"JavaScript errors on the page: {errors}"
    context.close()

"""What a person can do to get credit on this gpucloud, said one way everywhere: with Stripe
configured, add funds on the billing page; without it, the operator grants credit (there is no
card form to send anyone to)."""

from __future__ import annotations

from billing import stripe_gateway


def how_to_get_credit() -> str:
    """A sentence's ending: 'add funds on the Billing page' or 'ask the operator of this gpucloud
    for credit'."""
    if stripe_gateway.is_configured():
        return "add funds on the Billing page"
    return "ask the operator of this gpucloud for credit (card payments are not set up here)"

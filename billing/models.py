"""The ledger and what feeds it. All money is integer micro-USD (1 USD = 1_000_000).

Double entry: every LedgerTransaction has entries that sum to zero. Each organization has two
accounts, `available` (spendable credit) and `held` (credit reserved by open holds); its
balance is their sum. System accounts (Stripe clearing, promotional credit, revenue) are the
other side of every movement and may go negative: a source account is negative by what it gave.

Rows are only ever inserted: a correction is a new reversing transaction. An org account's cached
`LedgerAccount.balance_micros` changes only in the same database transaction as its entries,
under a row lock (see billing/ledger.py), and `manage.py ledger_check` proves it equals the sum.
System accounts keep no cached balance (it stays 0; billing.ledger.account_balance sums their
entries): every posting would otherwise queue on their rows, whichever organization it is for.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from gpucloud.core.ids import new_id


class AccountKind(models.TextChoices):
    AVAILABLE = "available", "Available credit"
    HELD = "held", "Held credit"
    STRIPE_CLEARING = "stripe_clearing", "Stripe clearing"
    PROMOTIONAL = "promotional", "Promotional credit"
    REVENUE = "revenue", "Revenue"


ORG_ACCOUNT_KINDS = (AccountKind.AVAILABLE, AccountKind.HELD)


class LedgerAccount(models.Model):
    org = models.ForeignKey("accounts.Organization", null=True, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=AccountKind.choices)
    balance_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "kind"], name="ledger_account_org_kind_unique"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(org__isnull=True), name="ledger_account_system_unique"
            ),
            models.CheckConstraint(
                condition=Q(org__isnull=True, kind__in=["stripe_clearing", "promotional", "revenue"])
                | Q(org__isnull=False, kind__in=["available", "held"]),
                name="ledger_account_kind_matches_owner",
            ),
            # Held credit is what open holds reserve: it can never be negative.
            models.CheckConstraint(
                condition=~Q(kind="held") | Q(balance_micros__gte=0), name="ledger_held_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.org_id or 'system'}:{self.kind}"


class TransactionKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    AUTO_REFILL = "auto_refill", "Auto-refill"
    USAGE = "usage", "Usage"
    HOLD = "hold", "Hold"
    HOLD_RELEASE = "hold_release", "Hold release"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"


class Service(models.TextChoices):
    MODEL = "model", "Model deployments"
    POD = "pod", "Pods"
    SERVERLESS = "serverless", "Serverless"
    STORAGE = "storage", "Storage"


class LedgerTransaction(models.Model):
    # Unique by a constraint, not unique=True: on PostgreSQL that adds a second, pattern-matching
    # index nobody queries, and every posting writes each of the ledger's indexes (issue 19).
    idempotency_key = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=TransactionKind.choices)
    # Found through the (org, kind, created_at) index below: no index of its own.
    org = models.ForeignKey(
        "accounts.Organization", null=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    service = models.CharField(max_length=20, choices=Service.choices, blank=True)
    description = models.CharField(max_length=200)
    reason = models.CharField(max_length=500, blank=True, help_text="Why an operator made an adjustment")
    overdraft = models.BooleanField(default=False, help_text="Metering charge allowed below zero available")
    created_by = models.ForeignKey("accounts.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["org", "kind", "created_at"])]
        constraints = [models.UniqueConstraint(fields=["idempotency_key"], name="ledger_transaction_key_unique")]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class LedgerEntry(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    # Found through the (account, -id) index below: no index of its own.
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False)
    amount_micros = models.BigIntegerField()
    balance_after_micros = models.BigIntegerField(
        null=True, blank=True,
        help_text="An org account's balance right after this entry (null on system accounts: they keep none)",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # (account, -id): the statement's pages; (account, created_at): reports over a period.
        indexes = [models.Index(fields=["account", "-id"]), models.Index(fields=["account", "created_at"])]
        constraints = [models.CheckConstraint(condition=~Q(amount_micros=0), name="ledger_entry_nonzero")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount_micros:+d}"


def new_hold_id() -> str:
    return new_id("hold")


class HoldStatus(models.TextChoices):
    OPEN = "open"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class CreditHold(models.Model):
    """Two-phase reservation of credit (TigerBeetle's pending transfer): open, then exactly one of
    post (part or all; the rest returns), void, or expire."""

    id = models.CharField(primary_key=True, max_length=40, default=new_hold_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=200, unique=True)
    amount_micros = models.BigIntegerField()
    posted_micros = models.BigIntegerField(null=True, blank=True)
    service = models.CharField(max_length=20, choices=Service.choices, blank=True)
    description = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=HoldStatus.choices, default=HoldStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [models.CheckConstraint(condition=Q(amount_micros__gt=0), name="hold_amount_positive")]

    def __str__(self) -> str:
        return f"{self.pk} {self.status} {self.amount_micros}"


class UsageMeter(models.Model):
    """One billed session of one instance: running time is charged per second at the hourly price,
    with a 60-second minimum, cumulatively so no fraction of a micro-dollar is lost between ticks."""

    meter_key = models.CharField(max_length=120, unique=True, help_text="The instance session, e.g. its id")
    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    service = models.CharField(max_length=20, choices=Service.choices)
    description = models.CharField(max_length=200)
    hourly_price_micros = models.BigIntegerField()
    gpu_count = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    billed_seconds = models.BigIntegerField(default=0)
    billed_micros = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["ended_at"])]

    def __str__(self) -> str:
        return self.meter_key

    @property
    def is_running(self) -> bool:
        return self.ended_at is None


class UsageDay(models.Model):
    """Usage charged to an org on one UTC day for one service: the sum of its usage entries on the
    org's available account and their GPU-seconds. Written by `ledger_post` in the transaction that
    posts each usage entry, so reports over a month read a few dozen rows instead of every entry;
    `ledger_check` proves it equals the entries."""

    org = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    service = models.CharField(max_length=20, blank=True)
    spend_micros = models.BigIntegerField(default=0)
    gpu_seconds = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "day", "service"], name="usage_day_unique")]

    def __str__(self) -> str:
        return f"{self.org_id} {self.day} {self.service or 'other'} {self.spend_micros}"


class BillingProfile(models.Model):
    """An organization's billing settings and Stripe identities."""

    org = models.OneToOneField("accounts.Organization", on_delete=models.CASCADE, related_name="billing")
    daily_spend_limit_micros = models.BigIntegerField(null=True, blank=True)
    auto_refill_enabled = models.BooleanField(default=False)
    auto_refill_threshold_micros = models.BigIntegerField(default=10_000_000)
    auto_refill_amount_micros = models.BigIntegerField(default=50_000_000)
    auto_refill_disabled_reason = models.CharField(max_length=300, blank=True)
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_payment_method_id = models.CharField(max_length=100, blank=True)
    payment_method_label = models.CharField(max_length=100, blank=True)
    grace_started_at = models.DateTimeField(null=True, blank=True)
    # Set when available credit fell below the low-balance threshold (balance.low fired), cleared
    # once it is back above: one event per fall, however many charges happen below.
    low_balance_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"billing of {self.org_id}"


class CheckoutStatus(models.TextChoices):
    OPEN = "open"
    COMPLETED = "completed"
    EXPIRED = "expired"


class CheckoutSession(models.Model):
    """A Stripe Checkout Session we created. The webhook credits only sessions found here."""

    session_id = models.CharField(max_length=200, unique=True)
    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    mode = models.CharField(max_length=10)  # payment | setup
    amount_micros = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=CheckoutStatus.choices, default=CheckoutStatus.OPEN)
    created_by = models.ForeignKey("accounts.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.session_id


class RefillStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AutoRefillAttempt(models.Model):
    """One off-session charge. Its idempotency key is stored before Stripe is called, so a crash
    between the two is retried with the same key and can never charge twice."""

    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    amount_micros = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=RefillStatus.choices, default=RefillStatus.PENDING)
    payment_intent_id = models.CharField(max_length=100, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # At most one refill in flight per organization, enforced by the database.
            models.UniqueConstraint(fields=["org"], condition=Q(status="pending"), name="one_pending_refill_per_org")
        ]

    def __str__(self) -> str:
        return f"refill {self.org_id} {self.status}"


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class StripeEvent(models.Model):
    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} {self.status}"

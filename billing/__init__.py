"""Money: the append-only double-entry ledger in micro-USD, credit holds, per-second metering,
Stripe top-ups and auto-refill, spend reports. Filled in by the billing issue."""

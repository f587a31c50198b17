"""Alerts: tell contributors the moment their GPUs stop earning.

- `evaluate`: once a minute, a few set-based queries find what changed (machines and GPUs
  offline or back, GPUs running hot, rewards at risk before an epoch closes, GPUs that earned
  nothing, failed verifications, confirmed claims and expired vouchers, daily digests) and raise
  each as an `AlertEvent`, once (its key is unique per contributor).
- `delivery`: each event goes to each channel that takes it as one `AlertDelivery` row, sent by
  a worker with a lease, retried with back-off, held through quiet hours, failed visibly.
- `targets`: the channels themselves (email, Apprise, signed webhooks) and the checks that keep
  a contributor's URL from reaching the portal's own network.
- `links`: signed links that verify an email address and unsubscribe without signing in.
- `pages`: /alerts/, where contributors manage all of it and read their history.
"""

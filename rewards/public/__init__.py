"""What the network shows the public, without signing in: `/network/` (the fleet online now,
what recent epochs paid, held-out GPUs, verification) and `/leaderboard/` (contributors ranked
by earnings and uptime), with the same figures at `/api/v1/network` and `/api/v1/leaderboard`.

Requests never query for them: a beat task (`rewards.public.tasks`) computes every figure with
a fixed number of set-based queries and keeps them in the shared cache (`store`); pages and the
API only read that. `network` and `leaderboard` compute, `charts` draws, `views` and `api` serve.
"""

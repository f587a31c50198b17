"""Small helpers shared by the apps, one topic a module: errors, JSON bodies, rate limits,
the hot cache, hand-written SQL, client addresses, bearer tokens, times, figures, and what the
apps' OpenAPI descriptions share (schema)."""

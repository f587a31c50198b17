"""Telemetry, from an agent's report to the rollups charts read, one step a module:

- `validation`: what a report may hold (fields, limits, the uuid forms NVML prints);
- `inventory`: registering a node's GPUs within what real hardware can be, MIG links, uuids
  that other nodes hold, and the flags for both;
- `known_agents`: what the shared cache remembers of an agent for the one-statement fast path;
- `intake`: the request side: authenticate, validate, store the batch, answer;
- `dispatch`: getting stored batches to a worker (drain flags, the sweeper, broker back-off);
- `store`: the worker side: claim batches, store samples, live state and nodes;
- `rollups`: per-minute and per-hour aggregates;
- `sql`: the hand-written SQL of all of them, one object per database.
"""

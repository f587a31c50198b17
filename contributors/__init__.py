"""Contributors, their wallets, their machines (nodes) and GPUs, and the agent API."""

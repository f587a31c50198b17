"""Reward policies, the GPU catalog, attested jobs, epochs, settlement, the ledger and claims."""

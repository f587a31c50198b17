"""Reward models. Epochs, the ledger and claims arrive with the rewards and claims work."""

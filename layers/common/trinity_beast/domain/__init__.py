"""The middle of the system: ticks, the price book, quotas, keys, the envelope, assets, partners. Imports nothing of ours."""

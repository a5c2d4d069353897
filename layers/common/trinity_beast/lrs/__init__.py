"""LRS: the report server (usage reports, a key's own usage)."""

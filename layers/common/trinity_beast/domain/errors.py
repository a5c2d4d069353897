"""The one error callers see when the database cannot be reached."""


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (connection refused, cut or timed out).

    Callers degrade instead of failing: the key ring answers from its last lookup, reports
    answer from the cache and say the database is missing, the sync job retries later.
    """

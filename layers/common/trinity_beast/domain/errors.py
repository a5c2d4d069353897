"""The one error callers see when the database cannot be reached."""


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (connection refused, cut or timed out).

    Callers degrade instead of failing: the key ring answers from its last lookup, reports
    answer from the cache and say the database is missing, the sync job retries later.
    """


class StatementTimeout(RuntimeError):
    """A query ran past its time limit and was cancelled by the database (reports:
    BEAST_REPORT_TIMEOUT_S). The caller answers that the request was too broad, not a 500."""

"""A price from the exchanges to an answer: the live in-process copy, the REST fallback, prewarm, the tick writer, the answer."""

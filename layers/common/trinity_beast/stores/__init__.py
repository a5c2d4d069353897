"""Storage behind contracts: the hot cache (memory, Redis) and the database (SQLite, PostgreSQL)."""

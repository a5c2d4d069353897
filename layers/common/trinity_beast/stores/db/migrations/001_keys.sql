-- API keys. Secrets are never stored: only their SHA-256 hash.
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('partner', 'subscriber', 'admin')),
    monthly_limit BIGINT NOT NULL DEFAULT 0,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);

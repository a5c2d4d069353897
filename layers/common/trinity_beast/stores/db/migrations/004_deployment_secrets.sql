-- Secrets a deployment makes for itself on first start and every process must share (the
-- report cursor MAC key when BEAST_CURSOR_KEY is not set). Written once, never updated.
CREATE TABLE IF NOT EXISTS deployment_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

-- Usage history: requests per time bucket and group (key, endpoint, asset, protocol, status).
-- The sync job writes minute rows; retention rolls old minute rows into hour rows and old
-- hour rows into day rows, so `grain` says how long a row's bucket is. `bucket_start` is
-- epoch seconds (UTC). Latency in microseconds: sum (for the mean) and max.
CREATE TABLE IF NOT EXISTS usage_buckets (
    grain TEXT NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
    bucket_start BIGINT NOT NULL,
    api_key_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    asset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    status INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    latency_us_sum BIGINT NOT NULL,
    latency_us_max BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket_start, api_key_id, endpoint, asset, protocol, status)
);

CREATE INDEX IF NOT EXISTS usage_buckets_by_time ON usage_buckets (bucket_start);

CREATE INDEX IF NOT EXISTS usage_buckets_by_key ON usage_buckets (api_key_id, bucket_start);

-- One row per cache bucket moved into usage_buckets, written in the same transaction as
-- its counts: a bucket whose id is here is never written again (no double counting).
CREATE TABLE IF NOT EXISTS usage_batches (
    batch_id TEXT PRIMARY KEY,
    synced_at DOUBLE PRECISION NOT NULL
);

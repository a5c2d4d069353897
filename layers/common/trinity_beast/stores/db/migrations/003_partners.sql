-- Partners: AWS customers who connect privately (PrivateLink for TCP, VPC peering for UDP).
-- Lists of ids are stored space-separated. `connection_id` is the partner's vpce-… or pcx-…
-- once known; `api_key_id` is the partner-tier key issued when the record was created.
CREATE TABLE IF NOT EXISTS partners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    aws_account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    connection_type TEXT NOT NULL CHECK (connection_type IN ('privatelink', 'peering')),
    vpc_id TEXT NOT NULL,
    cidr TEXT,
    subnet_ids TEXT NOT NULL DEFAULT '',
    security_group_ids TEXT NOT NULL DEFAULT '',
    route_table_id TEXT,
    connection_id TEXT UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('invited', 'pending', 'active', 'rejected', 'revoked')),
    api_key_id TEXT REFERENCES api_keys (id),
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS partners_by_status ON partners (status);

CREATE INDEX IF NOT EXISTS partners_by_key ON partners (api_key_id);

-- Every admin action on partners and on UDP access, in order (ids sort by time).
-- `partner_id` is null for actions on no one partner; `detail` is a JSON object.
CREATE TABLE IF NOT EXISTS partner_audit (
    id TEXT PRIMARY KEY,
    partner_id TEXT,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS partner_audit_by_partner ON partner_audit (partner_id, id);

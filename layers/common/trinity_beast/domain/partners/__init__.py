"""Partner records, CIDR rules and AWS id checks: plain data and validation, no I/O."""

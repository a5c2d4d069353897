"""What the system does, built from the domain, the exchanges and the stores: auth, prices, metering, reports, sync, partners."""

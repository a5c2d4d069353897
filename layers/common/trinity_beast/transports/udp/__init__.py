"""UDP: one JSON datagram in, one envelope out (LPO prices, LRS usage summaries)."""

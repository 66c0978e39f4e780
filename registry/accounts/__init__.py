"""Staff accounts, their sessions and the edge boxes (devices) the registry trusts."""

"""The fast layer: rules, locking and expiry against real files and a fake clock."""

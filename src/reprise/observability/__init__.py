"""Operating the cache: metrics, prices, request logs, and what the admin views read."""

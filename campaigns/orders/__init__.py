"""Orders from the shop: recording them idempotently (API, Shopify and WooCommerce webhooks)."""

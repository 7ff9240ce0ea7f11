"""The live Dash dashboard and HTTP JSON API over the Redis read model (never imports agents)."""

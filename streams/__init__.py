"""Event contracts: records, wire codecs, validation, upcasting and the topic registry.

Nothing here imports Faust or the app, so the generator, the dashboard and tests use it alone.
"""

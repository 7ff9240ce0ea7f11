"""Faust agents: thin glue that iterates, calls the pure logic in tables/, stores and emits."""

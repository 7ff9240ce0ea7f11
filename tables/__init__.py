"""State: event-time window logic as pure functions, and the Faust tables that persist it."""

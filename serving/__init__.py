"""The serving side: the Redis key layout, the projection that writes it, the read model over it."""

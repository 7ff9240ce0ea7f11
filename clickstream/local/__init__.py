"""Local infrastructure the project starts itself: Apache Kafka (KRaft, Maven Central jars) and
Redis (Debian's redis-server), each under one git-ignored folder, bound to 127.0.0.1."""

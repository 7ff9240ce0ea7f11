"""Clickstream: real-time clickstream and order analytics on Faust, Kafka, Redis and Dash."""

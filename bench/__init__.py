"""`python -m bench`: throughput of our worker against its peers, side by side, on one broker.

Never a timed test: it lives apart from tests/ and reports ratios and medians, not single times.
"""

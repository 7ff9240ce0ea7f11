"""Fraud scoring: the policy (data) and its scoring function, the features' formulas, and the
address registry the IP-country feature reads."""

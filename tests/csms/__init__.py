"""Tests of the CSMS protection layer: rate limits, admission, security events."""

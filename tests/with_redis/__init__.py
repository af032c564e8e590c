"""Tests that talk to the real Redis from the test process."""

"""Tests that stay in the test process: no Redis, no process of ours started."""

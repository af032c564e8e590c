"""Tests that start processes of ours: the CLI, workers, fresh interpreters, auto-instrumentation."""

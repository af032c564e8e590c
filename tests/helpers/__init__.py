"""What the tests share: helpers and runnable modules, never a test (see tests/conftest.py for fixtures)."""

"""The local platform: `python -m bot.demo` (`make demo`) and the deployment harness it and the tests use."""

"""The real Collector for tests: one definition, in the demo (`bot.demo.collector`), re-exported here."""

from bot.demo.collector import CONFIG, ROOT, Collector, collector_binary, free_port

__all__ = ["CONFIG", "ROOT", "Collector", "collector_binary", "free_port"]

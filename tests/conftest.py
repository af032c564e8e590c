import os
from pathlib import Path

# The resource is fixed by the first configure() in a process; give the test process a name.
os.environ.setdefault("OTEL_SERVICE_NAME", "otel-session-tests")
for name in ("OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
             "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_METRIC_EXPORT_INTERVAL",
             "GLOBAL_LOG_LEVEL", "TRACEPARENT", "BAGGAGE", "TRACESTATE"):
    os.environ.pop(name, None)


import pytest  # noqa: E402

TESTS = Path(__file__).resolve().parent

# What a test needs, as markers (registered in pyproject.toml; the Makefile selects on them). Its folder
# says the most its module needs; the `platform` fixture adds what the platform runs on; a module that
# needs more than that says so itself with `pytestmark` (the CLI's debug tests, for example).
FOLDER_MARKS: dict[str, tuple[str, ...]] = {
    "in_process": (),
    "with_redis": ("redis",),
    "processes": ("processes",),
    "bot_platform": ("bot", "latest_only"),  # the bot services and the demo: on the newest releases only
    "manifold_pipe": ("manifold",),
    # real Redis topologies (Cluster, Sentinel) as redis-server processes of the test's own
    "topologies": ("redis", "processes"),
    "collector": ("collector", "processes"),  # the real Collector (make collector) as a process
    # Chromium on the page in web/, against the bot services as real processes on Redis
    "browser": ("browser", "bot", "redis", "processes", "latest_only"),
}
FIXTURE_MARKS: dict[str, tuple[str, ...]] = {
    "platform": ("redis", "processes"),  # the bot platform's real processes on the real Redis
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stray = set()
    for item in items:
        path = Path(str(item.path)).resolve()
        if not path.is_relative_to(TESTS):
            continue
        folder = path.relative_to(TESTS).parts[0]
        if folder not in FOLDER_MARKS:
            stray.add(str(path.relative_to(TESTS.parent)))
            continue
        wanted = set(FOLDER_MARKS[folder])
        for fixture in item.fixturenames:
            wanted.update(FIXTURE_MARKS.get(fixture, ()))
        have = {mark.name for mark in item.iter_markers()}
        for name in sorted(wanted - have):
            item.add_marker(name)
    if stray:
        raise pytest.UsageError(f"test modules outside the folders of tests/ ({', '.join(sorted(FOLDER_MARKS))}), "
                                f"so without their markers: {', '.join(sorted(stray))}")


@pytest.fixture
def platform(tmp_path):
    from tests.helpers.bot_platform import Platform

    deployment = Platform(tmp_path)
    yield deployment
    deployment.cleanup()

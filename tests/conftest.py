import os

# The resource is fixed by the first configure() in a process; give the test process a name.
os.environ.setdefault("OTEL_SERVICE_NAME", "otel-session-tests")
for name in ("OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
             "GLOBAL_LOG_LEVEL", "TRACEPARENT", "BAGGAGE", "TRACESTATE"):
    os.environ.pop(name, None)


import pytest  # noqa: E402


@pytest.fixture
def platform(tmp_path):
    from tests.helpers.bot_platform import Platform

    deployment = Platform(tmp_path)
    yield deployment
    deployment.cleanup()

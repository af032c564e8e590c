"""Auto-instrumentation: `opentelemetry-instrument python -m app` runs `configure()` from the
environment, with one bridge handler that the app's own logging setup keeps (docs/library.md).

`SessionDistro` names our configurator and loads the `logging` instrumentor without a second handler;
`SessionConfigurator` calls `configure()` and keeps `basicConfig`/`dictConfig`/`fileConfig` from
removing the bridge.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import os
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # an untyped module
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_session._configure import configure

NAME = "otel_session"  # the entry-point name of both classes (pyproject.toml)
LOGGING_INSTRUMENTOR = "logging"  # opentelemetry-instrumentation-logging's entry-point name

_F = TypeVar("_F", bound=Callable[..., Any])
_guarded = False


class SessionDistro(BaseDistro):  # type: ignore[misc]
    """Our configurator unless the user named another; never a second bridge handler."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", NAME)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name == LOGGING_INSTRUMENTOR:
            # Still installs its record factory (OTEL_PYTHON_LOG_CORRELATION, log hooks), but not
            # a second bridge handler, whatever OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION says.
            kwargs["enable_log_auto_instrumentation"] = False
        super().load_instrumentor(entry_point, **kwargs)


class SessionConfigurator(_BaseConfigurator):
    """`otel_session.configure()` from the environment, once per process."""

    def _configure(self, **kwargs: Any) -> None:
        configure()
        _guard_bridge_handler()


def _keeping_bridge(config_fn: _F) -> _F:
    @functools.wraps(config_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        root = logging.getLogger()
        bridges = [h for h in root.handlers if isinstance(h, LoggingHandler)]
        for handler in bridges:
            root.removeHandler(handler)
        try:
            return config_fn(*args, **kwargs)
        finally:
            for handler in bridges:
                if handler not in root.handlers:
                    root.addHandler(handler)

    return wrapper  # type: ignore[return-value]


def _guard_bridge_handler() -> None:
    """The application's logging setup runs after `configure()`: let it in, keep the bridge."""
    global _guarded
    if _guarded:
        return
    _guarded = True
    logging.basicConfig = _keeping_bridge(logging.basicConfig)
    logging.config.dictConfig = _keeping_bridge(logging.config.dictConfig)
    logging.config.fileConfig = _keeping_bridge(logging.config.fileConfig)

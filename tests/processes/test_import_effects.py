"""Importing the package changes nothing in the process; configure() does, and reset()/shutdown() undo
it. Installing the package changes no other project's test run."""

import os
import subprocess
import sys
import textwrap

SNAPSHOT = """
import logging, os, sys, threading
from opentelemetry import baggage, context
from opentelemetry import _logs, trace
# What the SDK and the instrumentation do when they are imported is theirs: import them first.
import opentelemetry.sdk._logs.export, opentelemetry.sdk.trace.export, opentelemetry.instrumentation.logging.handler
import opentelemetry.exporter.otlp.proto.common._log_encoder, opentelemetry.sdk._configuration

def snapshot():
    loggers = {name: (tuple(l.handlers), l.level, l.propagate, tuple(l.filters))
               for name, l in logging.Logger.manager.loggerDict.items() if isinstance(l, logging.Logger)}
    root = logging.getLogger()
    runtime = context._RUNTIME_CONTEXT
    return {
        "root": (tuple(root.handlers), root.level, tuple(root.filters)),
        "loggers": {n: v for n, v in loggers.items() if v != ((), 0, True, ())},
        "methods": (logging.Logger.isEnabledFor, logging.Logger.callHandlers, logging.Logger.handle),
        "attach patched": "attach" in vars(runtime),
        "providers": (type(_logs.get_logger_provider()).__name__, type(trace.get_tracer_provider()).__name__),
        "threads": sorted(t.name for t in threading.enumerate()),
        "config": (logging.basicConfig, logging.config.dictConfig if hasattr(logging, "config") else None),
    }
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GLOBAL_LOG_LEVEL"))}
    return subprocess.run([sys.executable, "-c", SNAPSHOT + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=60)


def test_importing_every_module_of_the_package_changes_nothing():
    out = run("""
        before = snapshot()
        import otel_session, otel_session.grants, otel_session.testing, otel_session.pytest_plugin
        import otel_session.distro, otel_session.log_reader, otel_session._cli
        import otel_session.live.plug
        after = snapshot()
        for key in before:
            assert before[key] == after[key], (key, before[key], after[key])
        print("unchanged")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["unchanged"]


def test_a_fork_after_import_keeps_the_childs_context():
    """The at-fork hook (a child forgets its parent's sessions) is configure()'s, not the import's."""
    out = run("""
        import otel_session
        token = context.attach(baggage.set_baggage("session.id", "parent"))
        pid = os.fork()
        if pid == 0:
            os._exit(0 if baggage.get_baggage("session.id") == "parent" else 3)
        _, status = os.waitpid(pid, 0)
        kept = os.waitstatus_to_exitcode(status)
        otel_session.configure(exporter="none")
        pid = os.fork()
        if pid == 0:
            os._exit(0 if baggage.get_baggage("session.id") is None else 4)
        _, status = os.waitpid(pid, 0)
        print(kept, os.waitstatus_to_exitcode(status))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]


def test_configure_patches_and_reset_and_shutdown_take_the_patches_out():
    out = run("""
        import logging, otel_session
        from opentelemetry import context
        from otel_session import _stdlib
        runtime = context._RUNTIME_CONTEXT
        original = (logging.Logger.isEnabledFor, logging.Logger.callHandlers)
        def patched():
            return (logging.Logger.isEnabledFor is _stdlib.is_enabled_for, "attach" in vars(runtime),
                    logging.Logger.callHandlers is _stdlib.call_handlers)
        seen = []
        telemetry = otel_session.configure(exporter="none", buffer_level="DEBUG")
        seen.append(patched())
        otel_session.reset()
        seen.append(patched())
        telemetry = otel_session.configure(exporter="none", buffer_level="DEBUG")
        seen.append(patched())
        telemetry.shutdown()
        seen.append(patched())
        bridges = [h for h in logging.getLogger().handlers if type(h).__name__ == "BridgeHandler"]
        assert (logging.Logger.isEnabledFor, logging.Logger.callHandlers) == original
        print(seen, len(bridges))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "[(True, True, True), (False, False, False), (True, True, True), (False, False, False)] 0")


def test_installing_the_package_changes_no_other_projects_test_run(tmp_path):
    """A project that never asks for the fixture: the plugin is loaded (entry point), nothing else."""
    (tmp_path / "test_other.py").write_text(textwrap.dedent("""
        import logging
        from opentelemetry import context, _logs

        def test_the_process_is_as_the_stdlib_and_otel_left_it(pytestconfig):
            assert pytestconfig.pluginmanager.get_plugin("otel_session") is not None
            assert logging.Logger.isEnabledFor.__module__ == "logging"
            assert logging.Logger.callHandlers.__module__ == "logging"
            assert "attach" not in vars(context._RUNTIME_CONTEXT)
            assert type(_logs.get_logger_provider()).__name__ != "LoggerProvider"
            assert not [h for h in logging.getLogger().handlers if "otel" in type(h).__module__]
            logging.getLogger("other").warning("their own")
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout

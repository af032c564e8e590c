"""The attribute and baggage keys the library reads and writes: one set of names."""

SESSION_ID = "session.id"
USER_ID = "user.id"
USER_NAME = "user.name"
SERVICE_NAME = "service.name"
EXCEPTION_STACKTRACE = "exception.stacktrace"
LOG_LEVEL = "otel_session.log_level"  # a session's export level, travelling in baggage
LOG_LEVEL_SIG = "otel_session.log_level_sig"  # its signature (`_signing`): never a record attribute
BUFFERED = "otel_session.buffered"  # on a record the debug buffer exported when its trace failed
EVICTED = "otel_session.evicted"  # on the notice of buffered records evicted before a flush

"""`python -m otel_session` is the `otel-session` command."""

import sys

from otel_session._cli import main

if __name__ == "__main__":
    sys.exit(main())

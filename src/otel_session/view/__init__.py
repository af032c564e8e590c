"""`otel-session view`: one session across every service, on one page, in the browser.

`index` keeps a SQLite index of the OTLP-JSON files (`Index`), built incrementally as they grow; `server`
serves the pages and the JSON API over it with the standard library's HTTP server. Nothing here is imported
by the library below it: the view is a face, like the CLI that starts it (docs/view.md).
"""

#!/usr/bin/env bash
# Builds the OpenTelemetry Collector of collector-builder.yaml with the OpenTelemetry Collector Builder, once per
# manifest: into a cache outside the repository, keyed by the manifest's content, reused after. Then validates
# collector-config.yaml with it and prints the binary's path on the last line.
#   OTEL_SESSION_CACHE_DIR   the cache (default: ${XDG_CACHE_HOME:-~/.cache}/otel-session)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILDER_VERSION=v0.161.0  # the builder's release: the same v0.X as every module in collector-builder.yaml
GO_MIN=1.26  # what those modules' go.mod files ask for
MANIFEST=collector-builder.yaml
CONFIG=collector-config.yaml

if ! command -v go >/dev/null 2>&1; then
  echo "make collector: Go is not installed (the Collector is built from Go modules: install Go $GO_MIN or newer)" >&2
  exit 2
fi
have="$(GOTOOLCHAIN=local go env GOVERSION)"  # go1.26.8
if [ "$(printf '%s\n' "go$GO_MIN" "$have" | sort -V | head -n1)" != "go$GO_MIN" ]; then
  echo "make collector: $have is too old: the Collector's modules at ${BUILDER_VERSION} need Go $GO_MIN or newer" >&2
  exit 2
fi
if ! grep -q "^  version: ${BUILDER_VERSION#v}$" "$MANIFEST"; then
  echo "make collector: $MANIFEST's dist.version is not ${BUILDER_VERSION#v}, the builder's release here" >&2
  exit 1
fi

cache="${OTEL_SESSION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-session}/collector"
key="$(sha256sum "$MANIFEST" | cut -c1-16)"
dir="$cache/$key"
bin="$dir/otelcol-session"

if ! "$bin" components >/dev/null 2>&1; then
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  # The manifest says what to build; where to build it is this cache's business.
  sed "s|^dist:$|dist:\n  output_path: $work/out|" "$MANIFEST" > "$work/manifest.yaml"
  echo "make collector: building the Collector ($BUILDER_VERSION, a few minutes the first time) into $dir" >&2
  if ! GOTOOLCHAIN=local go run "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" \
      --config="$work/manifest.yaml" > "$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    echo "make collector: the build failed (the log above)" >&2
    exit 1
  fi
  mkdir -p "$work/final"
  mv "$work/out/otelcol-session" "$work/final/otelcol-session"
  cp "$MANIFEST" "$work/final/collector-builder.yaml"
  # A concurrent build of the same manifest may have finished first: either result is the same binary.
  mv -T "$work/final" "$dir" 2>/dev/null || true
fi

if ! out="$("$bin" validate --config="$CONFIG" 2>&1)"; then
  echo "$out" >&2
  echo "make collector: $CONFIG is not valid for this Collector" >&2
  exit 1
fi
echo "$bin"

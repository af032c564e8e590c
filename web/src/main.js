// A page that joins the bot platform from a browser, with the OpenTelemetry JS web SDK:
// the join's fetch carries the page's traceparent (and any baggage the page puts in its context), the
// join's answer names the trace the gateway started (JSON `traceId`, `Server-Timing`), and the page sends its
// own log records to the gateway's relay (`POST /v1/logs`) with the telemetry token the join handed it.
//
// Query parameters: gateway (required: the gateway's origin, e.g. http://127.0.0.1:8000), room, session,
// user, name (the join's fields), service (service.name, default web-client), baggage (entries the page
// puts in its own context, e.g. session.id=forged,otel_session.log_level=DEBUG), claim (a session.id the
// page claims on one of its records), autojoin=1 (join on load).
// Everything shown is set with textContent. The tests read window.__spans, __serverTiming, __join, __state.

import { context, propagation, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { FetchInstrumentation } from '@opentelemetry/instrumentation-fetch';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { WebTracerProvider } from '@opentelemetry/sdk-trace-web';

const params = new URLSearchParams(window.location.search);
const gateway = (params.get('gateway') || '').replace(/\/+$/, '');
const serviceName = params.get('service') || 'web-client';
const resource = resourceFromAttributes({ 'service.name': serviceName });

const state = { launchId: null, sessionId: null, traceId: null, status: null, serverTiming: null, error: null };
window.__state = state;
window.__spans = [];
window.__serverTiming = null;

function show(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value == null ? '' : String(value);
}

// Finished spans, kept for the tests (trace id, span id, name): a real span processor, no exporter needed.
const keeper = {
  onStart() {},
  onEnd(span) {
    const sc = span.spanContext();
    window.__spans.push({ traceId: sc.traceId, spanId: sc.spanId, name: span.name,
                          url: span.attributes['http.url'] || span.attributes['url.full'] || null });
  },
  forceFlush() { return Promise.resolve(); },
  shutdown() { return Promise.resolve(); },
};

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const tracerProvider = new WebTracerProvider({ resource, spanProcessors: [keeper] });
tracerProvider.register(); // StackContextManager, W3C trace context + baggage propagators
registerInstrumentations({
  instrumentations: [
    new FetchInstrumentation({
      // cross-origin requests carry traceparent (and baggage) only to the gateway
      propagateTraceHeaderCorsUrls: gateway ? [new RegExp('^' + escapeRegExp(gateway) + '/')] : [],
      ignoreUrls: [/\/v1\/logs$/],
    }),
  ],
});

// The page's own baggage: whatever it says must set nothing at the gateway (the edge drops it).
function pageContext() {
  const raw = params.get('baggage');
  if (!raw) return context.active();
  const entries = {};
  for (const part of raw.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) entries[part.slice(0, eq).trim()] = { value: part.slice(eq + 1).trim() };
  }
  return propagation.setBaggage(context.active(), propagation.createBaggage(entries));
}

let loggerProvider = null;
let logger = null;

function startLogs(token) {
  loggerProvider = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({
      exporter: new OTLPLogExporter({ url: gateway + '/v1/logs', headers: { Authorization: 'Bearer ' + token } }),
      scheduledDelayMillis: 200,
    })],
  });
  logger = loggerProvider.getLogger('web-client');
}

function log(body, attributes = {}, severityNumber = SeverityNumber.INFO, severityText = 'INFO') {
  if (!logger) return;
  logger.emit({ body, severityNumber, severityText,
                attributes: { 'bot.launch_id': state.launchId, ...attributes } });
}

window.__flushLogs = () => (loggerProvider ? loggerProvider.forceFlush() : Promise.resolve());

function traceOf(serverTiming) {
  // trace;desc="00-<trace id>-<span id>-<flags>"
  const match = /(?:^|,)\s*trace\s*;[^,]*?desc="?00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"?/i.exec(serverTiming || '');
  return match ? { traceId: match[1].toLowerCase(), spanId: match[2].toLowerCase() } : null;
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow() {
  // one long poll per status change (GET /launches/{id}?wait_s=N&seen=<status>): the gateway answers as soon as
  // the status moves on, so the page learns of each step at once and sends a request per step, not per tick
  const finals = new Set(['running', 'ended', 'failed']);
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    const waitS = Math.max(1, Math.min(20, Math.ceil((deadline - Date.now()) / 1000)));
    const query = '?wait_s=' + waitS + '&seen=' + encodeURIComponent(state.status);
    let status = null;
    try {
      const reply = await fetch(gateway + '/launches/' + encodeURIComponent(state.launchId) + query);
      if (reply.ok) status = (await reply.json()).status;
    } catch (err) {
      status = null;
    }
    if (!status) {
      await delay(1000);  // the gateway is away or refused: ask again a second later
      continue;
    }
    if (status !== state.status) {
      state.status = status;
      show('status', status);
      log('status ' + status, { 'web.launch_status': status });
    }
    if (finals.has(status)) return status;
  }
  return state.status;
}

async function join() {
  state.error = null;
  show('error', '');
  const body = { room_url: params.get('room') || document.getElementById('room').value };
  for (const [field, param] of [['sessionId', 'session'], ['userId', 'user'], ['userName', 'name']]) {
    if (params.get(param)) body[field] = params.get(param);
  }
  let reply;
  try {
    // the fetch starts inside the page's context: its span is the traceparent, its baggage goes along
    reply = await context.with(pageContext(), () => fetch(gateway + '/join', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    }));
  } catch (err) {
    state.error = (err && err.name ? err.name + ': ' : '') + (err && err.message ? err.message : String(err));
    show('error', state.error);
    return { ok: false, error: state.error, errorName: err && err.name };
  }
  const answer = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    state.error = 'HTTP ' + reply.status;
    show('error', state.error + ' ' + JSON.stringify(answer));
    return { ok: false, error: state.error, status: reply.status };
  }
  state.launchId = answer.launchId;
  state.sessionId = answer.sessionId;
  state.traceId = answer.traceId;
  state.status = answer.status || 'queued';
  show('status', state.status);
  state.serverTiming = reply.headers.get('Server-Timing');
  window.__serverTiming = state.serverTiming;
  const timing = traceOf(state.serverTiming);
  show('launch-id', state.launchId);
  show('session-id', state.sessionId);
  show('trace-id', state.traceId);
  show('server-timing', state.serverTiming || '(none)');
  show('server-timing-trace', timing ? timing.traceId : '');
  if (answer.telemetryToken) startLogs(answer.telemetryToken);
  log('joined', { 'web.event': 'joined', 'web.server_timing_trace': timing ? timing.traceId : '' });
  log('status ' + state.status, { 'web.launch_status': state.status });
  const claim = params.get('claim');
  if (claim) log('a record that claims another session', { 'web.event': 'claim', 'session.id': claim });
  const status = await follow();
  await window.__flushLogs();
  return { ok: true, launchId: state.launchId, sessionId: state.sessionId, traceId: state.traceId,
           serverTiming: state.serverTiming, serverTimingTrace: timing, status };
}

window.__join = join;
window.__tracer = trace.getTracer('web-client');

document.getElementById('gateway').textContent = gateway || '(no ?gateway= given)';
if (params.get('room')) document.getElementById('room').value = params.get('room');
document.getElementById('join').addEventListener('click', () => { join(); });
if (params.get('autojoin') === '1') join();
window.__ready = true;

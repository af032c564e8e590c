// One session's page: a timeline (a lane per service, traces as bars with spans nested, records as marks,
// linked traces joined by dashed links, grant and flush events marked) and every record in time order,
// with filters. It follows the session live: every second it asks for what was indexed since (`after`).
"use strict";

(() => {
  const {el, svg, tip, getJSON, clock, day, duration, levelClass} = OV;
  const PREFIX = "/sessions/";
  const sessionId = decodeURIComponent(location.pathname.slice(PREFIX.length));
  const POLL_MS = 1000;
  const PAGE = 1000;

  const state = {
    generation: null,
    summary: null,
    records: [],          // in time order
    recordIds: new Set(),
    spans: new Map(),     // trace_id + span_id -> span
    traces: [],
    events: [],
    filters: {service: "", level: 0, logger: "", text: "", trace: "", span: ""},
    expanded: new Set(),  // record ids whose details are open
    selectedSpan: "",     // trace_id + span_id
    zoom: null,           // [from, to] in Unix ms, or null for the whole session
    limit: PAGE,
    missing: false,
  };

  const $ = (id) => document.getElementById(id);
  document.title = sessionId + " · otel-session view";
  $("session-id").textContent = sessionId;

  // --- fetching ------------------------------------------------------------------------------------

  let polling = false;

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const after = state.generation === null ? "" : "?after=" + state.generation;
      const answer = await getJSON("/api/sessions/" + encodeURIComponent(sessionId) + after);
      $("live").className = "live";
      $("live").textContent = "live";
      if (answer.status === 404) {
        showMissing();
        return;
      }
      if (!answer.ok || !answer.body) return;
      merge(answer.body);
    } catch (e) {
      $("live").className = "live off";
      $("live").textContent = "offline";
    } finally {
      polling = false;
    }
  }

  function showMissing() {
    if (state.generation !== null) return;
    state.missing = true;
    const notice = $("missing");
    notice.hidden = false;
    notice.textContent = "No record carries session id " + JSON.stringify(sessionId) +
      " yet. This page keeps looking.";
  }

  function merge(answer) {
    $("missing").hidden = true;
    let changed = state.generation === null;
    state.generation = answer.generation;
    state.summary = answer;
    for (const record of answer.records) {
      if (state.recordIds.has(record.id)) continue;
      state.recordIds.add(record.id);
      state.records.push(record);
      changed = true;
    }
    if (changed) state.records.sort((a, b) => a.time_ms - b.time_ms || a.id - b.id);
    for (const span of answer.spans) {
      const key = span.trace_id + span.span_id;
      if (!state.spans.has(key)) changed = true;
      state.spans.set(key, span);
    }
    if (JSON.stringify(answer.events) !== JSON.stringify(state.events)) changed = true;
    state.events = answer.events;
    state.traces = answer.traces;
    renderSummary();
    if (changed) {
      renderFilters();
      renderTimeline();
      renderRecords();
    }
  }

  // --- summary -------------------------------------------------------------------------------------

  function renderSummary() {
    const s = state.summary;
    const items = [
      ["user", s.user_id || "—"],
      ["services", s.services.join(", ")],
      ["records", String(s.record_count)],
      ["warnings", String(s.warnings)],
      ["errors", String(s.errors)],
      ["first", day(s.first) + " " + clock(s.first)],
      ["last", day(s.last) + " " + clock(s.last)],
      ["traces", String(state.traces.filter((t) => !t.linked).length) +
        (state.traces.some((t) => t.linked) ? " (+" + state.traces.filter((t) => t.linked).length + " linked)" : "")],
    ];
    const box = $("summary");
    box.replaceChildren(...items.map(([name, value]) =>
      el("span", {class: "item"}, el("span", {class: "name", text: name}), el("span", {class: "value", text: value}))));
    if (s.buffered) box.append(el("span", {class: "badge flush", text: "flushed on failure"}));
    if (s.granted) box.append(el("span", {class: "badge grant", text: "debug grant"}));
    if (s.truncated) box.append(el("span", {class: "badge", text: "only the last records are shown"}));
  }

  // --- filters -------------------------------------------------------------------------------------

  function fillSelect(select, values) {
    const current = select.value;
    const wanted = ["", ...values];
    const have = Array.from(select.options).map((o) => o.value);
    if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) return;
    select.replaceChildren(el("option", {value: "", text: "all"}),
      ...values.map((v) => { const o = el("option", {text: v}); o.value = v; return o; }));
    select.value = values.includes(current) ? current : "";
  }

  function renderFilters() {
    fillSelect($("f-service"), serviceOrder());
    fillSelect($("f-logger"), [...new Set(state.records.map((r) => r.logger))].sort());
    const chip = $("f-trace");
    const f = state.filters;
    if (f.trace || f.span) {
      chip.hidden = false;
      chip.replaceChildren(
        el("span", {text: f.span ? "span " + f.span : "trace " + f.trace}),
        el("button", {type: "button", class: "clear", text: "×", title: "show every record",
                      onclick: () => { f.trace = ""; f.span = ""; state.selectedSpan = ""; rerender(); }}));
    } else {
      chip.hidden = true;
      chip.replaceChildren();
    }
  }

  function matches(record) {
    const f = state.filters;
    if (f.service && record.service !== f.service) return false;
    if (f.level && record.severity_number < f.level) return false;
    if (f.logger && record.logger !== f.logger) return false;
    if (f.trace && record.trace_id !== f.trace) return false;
    if (f.span && record.span_id !== f.span) return false;
    if (f.text) {
      const text = f.text.toLowerCase();
      const hay = (record.message + "\n" + record.logger + "\n" + JSON.stringify(record.attributes)).toLowerCase();
      if (!hay.includes(text)) return false;
    }
    return true;
  }

  for (const [id, key, parse] of [["f-service", "service", String], ["f-level", "level", Number],
                                  ["f-logger", "logger", String], ["f-text", "text", String]]) {
    $(id).addEventListener("input", () => {
      state.filters[key] = parse($(id).value);
      state.limit = PAGE;
      renderRecords();
    });
  }
  $("more").addEventListener("click", () => { state.limit += PAGE; renderRecords(); });

  function rerender() {
    renderFilters();
    renderTimeline();
    renderRecords();
  }

  function showTrace(traceId) {
    state.filters.trace = traceId;
    state.filters.span = "";
    state.selectedSpan = "";
    rerender();
    $("records").scrollIntoView({block: "start"});
  }

  function showSpan(traceId, spanId) {
    state.filters.trace = traceId;
    state.filters.span = spanId;
    state.selectedSpan = traceId + spanId;
    rerender();
    showSpanDetail(state.spans.get(traceId + spanId), traceId, spanId);
  }

  // --- the timeline --------------------------------------------------------------------------------

  function serviceOrder() {
    const first = new Map();
    const note = (service, t) => {
      if (!first.has(service) || first.get(service) > t) first.set(service, t);
    };
    for (const r of state.records) note(r.service, r.time_ms);
    for (const s of state.spans.values()) note(s.service, s.start_ms);
    return [...first.keys()].sort((a, b) => first.get(a) - first.get(b) || (a < b ? -1 : 1));
  }

  function spanDepths(spans) {
    const byKey = new Map(spans.map((s) => [s.trace_id + s.span_id, s]));
    const depth = new Map();
    const depthOf = (span) => {
      const key = span.trace_id + span.span_id;
      if (depth.has(key)) return depth.get(key);
      depth.set(key, 0);  // a cycle in bad data stops here
      const parent = span.parent_span_id && byKey.get(span.trace_id + span.parent_span_id);
      const d = parent && parent.service === span.service ? depthOf(parent) + 1 : 0;
      depth.set(key, d);
      return d;
    };
    for (const span of spans) depthOf(span);
    return depth;
  }

  // Place each trace's spans of one lane as a block of rows (depth under the trace's top span), blocks
  // packed so that no two overlap in time.
  function layoutLane(spans) {
    const depth = spanDepths(spans);
    const groups = new Map();
    for (const span of spans) {
      const g = groups.get(span.trace_id) || {spans: [], start: Infinity, end: -Infinity, height: 0};
      g.spans.push(span);
      g.start = Math.min(g.start, span.start_ms);
      g.end = Math.max(g.end, span.end_ms);
      g.height = Math.max(g.height, depth.get(span.trace_id + span.span_id) + 1);
      groups.set(span.trace_id, g);
    }
    const rows = [];  // per row: list of [start, end]
    const free = (row, start, end) => !(rows[row] || []).some(([a, b]) => start < b && a < end);
    const placed = new Map();
    for (const g of [...groups.values()].sort((a, b) => a.start - b.start)) {
      let base = 0;
      while (true) {
        let ok = true;
        for (let r = base; r < base + g.height; r++) if (!free(r, g.start, g.end)) { ok = false; break; }
        if (ok) break;
        base++;
      }
      for (let r = base; r < base + g.height; r++) (rows[r] = rows[r] || []).push([g.start, g.end]);
      for (const span of g.spans) placed.set(span.trace_id + span.span_id, base + depth.get(span.trace_id + span.span_id));
    }
    return {rows: rows.length, placed};
  }

  function renderTimeline() {
    const box = $("timeline");
    const spans = [...state.spans.values()];
    const records = state.records;
    const events = state.events;
    const times = [];
    for (const r of records) times.push(r.time_ms);
    for (const s of spans) times.push(s.start_ms, s.end_ms);
    for (const e of events) times.push(e.time_ms);
    if (!times.length) { box.replaceChildren(); return; }
    let t0 = times.reduce((a, b) => Math.min(a, b), Infinity);
    let t1 = times.reduce((a, b) => Math.max(a, b), -Infinity);
    const origin = t0;
    let pad = 0;
    if (state.zoom) {
      [t0, t1] = state.zoom;
    } else {
      if (t1 - t0 < 1) { t0 -= 0.5; t1 += 0.5; }
      pad = (t1 - t0) * 0.01;
      t0 -= pad; t1 += pad;
    }

    const LABEL = 150, RIGHT = 16, ROW = 16, MARKS = 16, GAP = 10, AXIS = 22;
    const width = Math.max(box.clientWidth || 900, 500);
    const plot = width - LABEL - RIGHT;
    const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * plot;

    const lanes = [];
    let y = AXIS;
    if (events.length) {
      lanes.push({name: "events", kind: "events", y, height: MARKS});
      y += MARKS + GAP;
    }
    const spanY = new Map();
    for (const service of serviceOrder()) {
      const laneSpans = spans.filter((s) => s.service === service);
      const layout = layoutLane(laneSpans);
      const top = y;
      for (const span of laneSpans) spanY.set(span.trace_id + span.span_id, top + layout.placed.get(span.trace_id + span.span_id) * ROW);
      const height = layout.rows * ROW + MARKS;
      lanes.push({name: service, kind: "service", y: top, height, marksY: top + layout.rows * ROW});
      y += height + GAP;
    }
    const height = y;
    const root = svg("svg", {width, height, class: "chart", role: "img"});
    root.append(tip("Timeline of session " + sessionId));

    // axis: ticks relative to the session's first moment
    const axis = svg("g", {class: "axis"});
    const ticks = 8;
    for (let i = 0; i <= ticks; i++) {
      const t = t0 + ((t1 - t0) * i) / ticks;
      const tx = x(t);
      axis.append(svg("line", {x1: tx, x2: tx, y1: AXIS - 4, y2: height, class: "grid"}));
      const label = svg("text", {x: tx, y: AXIS - 8, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle"});
      label.textContent = "+" + duration(Math.max(0, t - origin));
      axis.append(label);
    }
    root.append(axis);
    const clip = svg("clipPath", {id: "plot-area"}, svg("rect", {x: LABEL - 6, y: 0, width: plot + 12, height}));
    root.append(svg("defs", null, clip));

    for (const lane of lanes) {
      const g = svg("g", {class: "lane " + lane.kind});
      g.append(svg("rect", {x: 0, y: lane.y - 2, width, height: lane.height + 4, class: "lane-bg"}));
      const label = svg("text", {x: 6, y: lane.y + 12, class: "lane-label"});
      label.textContent = lane.name.length > 20 ? lane.name.slice(0, 19) + "…" : lane.name;
      label.append(tip(lane.name));
      g.append(label);
      root.append(g);
    }

    // spans as bars, nested by depth
    const bars = svg("g", {class: "spans", "clip-path": "url(#plot-area)"});
    for (const span of spans) {
      const key = span.trace_id + span.span_id;
      const sy = spanY.get(key);
      const bx = x(span.start_ms);
      const bw = Math.max(2, x(span.end_ms) - bx);
      const cls = ["span"];
      if (span.linked) cls.push("linked");
      if (span.status === "ERROR") cls.push("failed");
      if (state.filters.trace && span.trace_id === state.filters.trace) cls.push("in-trace");
      if (state.selectedSpan === key) cls.push("selected");
      const bar = svg("g", {class: cls.join(" "), "data-span": span.span_id, "data-trace": span.trace_id});
      bar.append(svg("rect", {x: bx, y: sy + 1, width: bw, height: ROW - 3, rx: 2}));
      const shownFrom = Math.max(bx, LABEL), shown = Math.min(bx + bw, LABEL + plot) - shownFrom;
      if (shown > 40) {  // the name, on the part of the bar in view
        const text = svg("text", {x: shownFrom + 3, y: sy + ROW - 5, class: "span-label"});
        const room = Math.floor((shown - 6) / 6.2);
        text.textContent = span.name.length > room ? span.name.slice(0, Math.max(0, room - 1)) + "…" : span.name;
        bar.append(text);
      }
      bar.append(tip(span.name + " · " + span.service + " · " + duration(span.end_ms - span.start_ms) +
        (span.status === "ERROR" ? " · ERROR " + (span.status_message || "") : "") +
        (span.linked ? " · linked trace " : " · trace ") + span.trace_id));
      bar.addEventListener("click", () => showSpan(span.trace_id, span.span_id));
      bars.append(bar);
    }
    root.append(bars);

    // links between traces: from the linked span to the span that links it
    const links = svg("g", {class: "links", "clip-path": "url(#plot-area)"});
    for (const span of spans) {
      for (const link of span.links || []) {
        const from = spanY.get(link.trace_id + link.span_id);
        const fromSpan = state.spans.get(link.trace_id + link.span_id);
        const to = spanY.get(span.trace_id + span.span_id);
        if (from === undefined || to === undefined || !fromSpan) continue;
        const x1 = x(fromSpan.start_ms), x2 = x(span.start_ms);
        const path = svg("path", {d: `M ${x1} ${from + ROW / 2} C ${x1 + 30} ${from + ROW / 2}, ${x2 - 30} ${to + ROW / 2}, ${x2} ${to + ROW / 2}`,
                                  class: "link"});
        path.append(tip("link: " + fromSpan.name + " → " + span.name));
        links.append(path);
      }
    }
    root.append(links);

    // records as marks: on their span's bar when it is drawn, else on the lane's record row
    const marks = svg("g", {class: "marks", "clip-path": "url(#plot-area)"});
    const laneOf = new Map(lanes.filter((l) => l.kind === "service").map((l) => [l.name, l]));
    for (const record of records) {
      const lane = laneOf.get(record.service);
      if (!lane) continue;
      const onSpan = record.span_id && spanY.get(record.trace_id + record.span_id);
      const spanKey = record.trace_id + record.span_id;
      const onLane = onSpan !== undefined && onSpan !== false && state.spans.get(spanKey) &&
        state.spans.get(spanKey).service === record.service;
      const my = onLane ? onSpan + ROW / 2 : lane.marksY + MARKS / 2;
      const mx = x(record.time_ms);
      const cls = "mark " + levelClass(record.severity_number) + (matches(record) ? "" : " dim") +
        (state.expanded.has(record.id) ? " selected" : "");
      const mark = svg("g", {class: cls, "data-record": record.id});
      mark.append(svg("rect", {x: mx - 1.5, y: my - 5, width: 3, height: 10, rx: 1}));
      mark.append(tip(clock(record.time) + " " + record.level + " " + record.logger + ": " + record.message.slice(0, 300)));
      mark.addEventListener("click", () => selectRecord(record.id));
      marks.append(mark);
    }
    root.append(marks);

    // grant and flush events
    const eventLane = lanes.find((l) => l.kind === "events");
    if (eventLane) {
      const g = svg("g", {class: "events", "clip-path": "url(#plot-area)"});
      for (const event of events) {
        const ex = x(event.time_ms);
        const ey = eventLane.y + MARKS / 2;
        const shape = event.kind === "grant"
          ? svg("path", {d: `M ${ex} ${ey - 6} L ${ex + 6} ${ey} L ${ex} ${ey + 6} L ${ex - 6} ${ey} Z`, class: "event grant"})
          : svg("path", {d: `M ${ex - 6} ${ey + 5} L ${ex + 6} ${ey + 5} L ${ex} ${ey - 6} Z`, class: "event flush"});
        shape.append(tip(eventText(event)));
        shape.addEventListener("click", () => selectRecord(event.record_id));
        g.append(shape);
        g.append(svg("line", {x1: ex, x2: ex, y1: ey + 6, y2: height, class: "event-rule " + event.kind}));
      }
      root.append(g);
    }
    enableZoom(root, x, LABEL, plot, t0, t1, height);
    box.replaceChildren(root);
    renderLegend();
  }

  // Drag across the timeline to zoom into that stretch of time; "whole session" (or a double click) undoes it.
  function enableZoom(root, x, left, plot, t0, t1, height) {
    const time = (px) => t0 + ((Math.min(Math.max(px, left), left + plot) - left) / plot) * (t1 - t0);
    const band = svg("rect", {class: "zoom-band", x: 0, y: 0, width: 0, height, hidden: "hidden"});
    root.append(band);
    let start = null;
    const px = (event) => event.clientX - root.getBoundingClientRect().left;
    root.addEventListener("mousedown", (event) => {
      if (event.button !== 0 || px(event) < left) return;
      start = px(event);
      event.preventDefault();
    });
    root.addEventListener("mousemove", (event) => {
      if (start === null) return;
      const now = px(event);
      band.removeAttribute("hidden");
      band.setAttribute("x", Math.min(start, now));
      band.setAttribute("width", Math.abs(now - start));
    });
    const finish = (event) => {
      if (start === null) return;
      const end = px(event);
      const from = start;
      start = null;
      band.setAttribute("hidden", "hidden");
      if (Math.abs(end - from) < 6) return;  // a click, not a drag
      state.zoom = [time(Math.min(from, end)), time(Math.max(from, end))];
      renderTimeline();
    };
    root.addEventListener("mouseup", finish);
    root.addEventListener("mouseleave", finish);
    root.addEventListener("dblclick", () => { if (state.zoom) { state.zoom = null; renderTimeline(); } });
    const reset = $("zoom-reset");
    reset.hidden = !state.zoom;
  }

  $("zoom-reset").addEventListener("click", () => { state.zoom = null; renderTimeline(); });

  function eventText(event) {
    if (event.kind === "grant") {
      return "debug grant " + event.grant_id + " " + event.event + ": " + (event.level || "") + " for " + event.target +
        (event.expires ? " until " + clock(event.expires) : "") + " (" + event.service + (event.by ? ", by " + event.by : "") + ")";
    }
    return "flushed on failure: " + event.records + " buffered records from " + event.service +
      (event.evicted ? " (" + event.evicted + " evicted)" : "") + (event.trace_id ? ", trace " + event.trace_id : "");
  }

  function renderLegend() {
    const item = (cls, text) => el("span", {class: "key"}, el("span", {class: "swatch " + cls}), text);
    $("legend").replaceChildren(
      item("span", "span"), item("span linked", "linked trace"), item("span failed", "failed span"),
      item("mark info", "record"), item("mark warn", "warning"), item("mark error", "error"),
      item("event grant", "debug grant"), item("event flush", "flush on failure"));
  }

  function showSpanDetail(span, traceId, spanId) {
    const box = $("detail");
    box.hidden = false;
    const close = el("button", {type: "button", class: "clear", text: "×", title: "close",
                                onclick: () => { box.hidden = true; }});
    if (!span) {
      box.replaceChildren(close, el("p", {text: "span " + spanId + " of trace " + traceId + " is not in the files"}));
      return;
    }
    const rows = [
      ["span", span.name], ["service", span.service], ["kind", span.kind], ["status", span.status +
        (span.status_message ? ": " + span.status_message : "")],
      ["start", span.start], ["duration", duration(span.end_ms - span.start_ms)],
      ["trace", span.trace_id + (span.linked ? " (linked)" : "")], ["span id", span.span_id],
      ["parent", span.parent_span_id || "—"],
    ];
    const table = el("table", {class: "kv"}, ...rows.map(([k, v]) => el("tr", null, el("th", {text: k}), el("td", {text: v}))));
    const extra = [];
    if (span.attributes && Object.keys(span.attributes).length) {
      extra.push(el("h3", {text: "attributes"}), el("pre", {text: JSON.stringify(span.attributes, null, 2)}));
    }
    if (span.events && span.events.length) {
      extra.push(el("h3", {text: "events"}), el("pre", {text: JSON.stringify(span.events, null, 2)}));
    }
    if (span.links && span.links.length) {
      extra.push(el("h3", {text: "links"}), el("pre", {text: JSON.stringify(span.links, null, 2)}));
    }
    box.replaceChildren(close, table, ...extra);
  }

  // --- the records ---------------------------------------------------------------------------------

  function selectRecord(id) {
    const record = state.records.find((r) => r.id === id);
    if (!record) return;
    if (!matches(record)) {
      state.filters = {service: "", level: 0, logger: "", text: "", trace: "", span: ""};
      $("f-service").value = ""; $("f-level").value = "0"; $("f-logger").value = ""; $("f-text").value = "";
    }
    state.expanded.add(id);
    const index = state.records.filter(matches).findIndex((r) => r.id === id);
    if (index >= state.limit) state.limit = index + PAGE;
    rerender();
    const row = document.querySelector(`tr[data-record="${Number(id)}"]`);
    if (row) {
      row.scrollIntoView({block: "center"});
      row.classList.add("flash");
    }
  }

  function idButton(text, title, onclick) {
    return el("button", {type: "button", class: "id", text, title, onclick: (e) => { e.stopPropagation(); onclick(); }});
  }

  function recordRow(record, first) {
    const exception = record.attributes["exception.stacktrace"];
    const message = record.message.split("\n")[0];
    const badges = [];
    if (record.attributes["otel_session.buffered"] === true) badges.push(el("span", {class: "badge flush", text: "flushed"}));
    if (record.logger === "otel_session.audit") badges.push(el("span", {class: "badge grant", text: "grant"}));
    if (exception) badges.push(el("span", {class: "badge error", text: "exception"}));
    const row = el("tr", {class: "record " + levelClass(record.severity_number) +
                          (state.expanded.has(record.id) ? " open" : ""), "data-record": record.id},
      el("td", {class: "time", title: record.time + "  (+" + duration(record.time_ms - first) + ")", text: clock(record.time)}),
      el("td", {class: "service", text: record.service}),
      el("td", null, el("span", {class: "level " + levelClass(record.severity_number), text: record.level})),
      el("td", {class: "logger", text: record.logger}),
      el("td", {class: "message"}, el("span", {text: message}), ...badges),
      el("td", null, record.trace_id ? idButton(record.trace_id.slice(0, 8), "only the records of trace " + record.trace_id,
                                                () => showTrace(record.trace_id)) : ""),
    );
    row.addEventListener("click", () => {
      if (state.expanded.has(record.id)) state.expanded.delete(record.id); else state.expanded.add(record.id);
      renderRecords();
      renderTimeline();
    });
    const rows = [row];
    if (state.expanded.has(record.id)) rows.push(detailRow(record, exception));
    return rows;
  }

  function detailRow(record, exception) {
    const attributes = Object.assign({}, record.attributes);
    delete attributes["exception.stacktrace"];
    const parts = [
      el("div", {class: "ids"},
        el("span", {class: "muted", text: record.time + " · session "}), el("span", {text: record.session_id || "—"}),
        el("span", {class: "muted", text: " · user "}), el("span", {text: record.user_id || "—"}),
        record.trace_id ? el("span", {class: "muted", text: " · trace "}) : "",
        record.trace_id ? idButton(record.trace_id, "only the records of this trace", () => showTrace(record.trace_id)) : "",
        record.span_id ? el("span", {class: "muted", text: " · span "}) : "",
        record.span_id ? idButton(record.span_id, "this span on the timeline, and its records",
                                  () => showSpan(record.trace_id, record.span_id)) : ""),
    ];
    if (record.message.includes("\n")) parts.push(el("pre", {class: "message-full", text: record.message}));
    const keys = Object.keys(attributes).sort();
    if (keys.length) {
      parts.push(el("table", {class: "kv attributes"}, ...keys.map((key) => el("tr", null,
        el("th", {text: key}),
        el("td", {text: typeof attributes[key] === "string" ? attributes[key] : JSON.stringify(attributes[key])})))));
    }
    if (exception) parts.push(el("pre", {class: "exception", text: String(exception)}));
    return el("tr", {class: "details"}, el("td", {colspan: 6}, ...parts));
  }

  function renderRecords() {
    const shown = state.records.filter(matches);
    const first = state.records.length ? state.records[0].time_ms : 0;
    const body = $("record-rows");
    const rows = [];
    for (const record of shown.slice(0, state.limit)) rows.push(...recordRow(record, first));
    body.replaceChildren(...rows);
    $("shown").textContent = shown.length === state.records.length
      ? shown.length + " records" : shown.length + " of " + state.records.length + " records";
    $("more").hidden = shown.length <= state.limit;
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderTimeline, 150);
  });

  poll();
  setInterval(poll, POLL_MS);
})();

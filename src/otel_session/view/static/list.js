// The sessions page: every session in the directory, newest first, searchable; refreshed every 2 s.
"use strict";

(() => {
  const {el, getJSON, clock, day, sessionHref} = OV;
  const search = document.getElementById("search");
  const rows = document.getElementById("rows");
  const count = document.getElementById("count");
  const empty = document.getElementById("empty");
  let typingTimer = null;
  let loading = false;

  function services(list) {
    return el("span", {class: "services"}, ...list.map((name) => el("span", {class: "tag", text: name})));
  }

  function marks(session) {
    const out = el("span", {class: "marks"});
    if (session.buffered) {
      out.append(el("span", {class: "badge flush", text: "flushed",
                             title: "records exported by the debug buffer when a trace failed"}));
    }
    if (session.granted) {
      out.append(el("span", {class: "badge grant", text: "debug grant",
                             title: "a debug grant covered this session while it logged"}));
    }
    return out;
  }

  function row(session) {
    const link = el("a", {href: sessionHref(session.session_id), class: "sid", text: session.session_id});
    return el("tr", {class: session.errors ? "has-errors" : null},
      el("td", null, link),
      el("td", {text: session.user_id || ""}),
      el("td", null, services(session.services || [])),
      el("td", {class: "num", text: session.records}),
      el("td", {class: "num" + (session.warnings ? " warn" : ""), text: session.warnings}),
      el("td", {class: "num" + (session.errors ? " error" : ""), text: session.errors}),
      el("td", {title: session.first, text: day(session.first) + " " + clock(session.first)}),
      el("td", {title: session.last, text: day(session.last) + " " + clock(session.last)}),
      el("td", null, marks(session)),
    );
  }

  async function load() {
    if (loading) return;
    loading = true;
    const query = search.value.trim();
    try {
      const answer = await getJSON("/api/sessions" + (query ? "?q=" + encodeURIComponent(query) : ""));
      if (!answer.ok || !Array.isArray(answer.body) || query !== search.value.trim()) return;
      rows.replaceChildren(...answer.body.map(row));
      count.textContent = answer.body.length + (answer.body.length === 1 ? " session" : " sessions");
      empty.hidden = answer.body.length > 0 || query !== "";
    } catch (e) {
      count.textContent = "the view is not answering";
    } finally {
      loading = false;
    }
  }

  async function loadStatus() {
    try {
      const answer = await getJSON("/api/status");
      if (answer.ok && answer.body) showStatus(answer.body);
    } catch (e) {
      /* shown by the sessions' poll */
    }
  }

  function showStatus(status) {
    document.getElementById("directory").textContent = status.directory;
    const parts = [
      status.files.length + " files", status.records + " records", status.spans + " spans",
      status.sessions + " sessions", status.skipped_lines + " unreadable lines skipped",
    ];
    if (status.error) parts.push(status.error);
    document.getElementById("status-line").textContent = "Read: " + parts.join(" · ");
    const table = el("table", {class: "files"},
      el("thead", null, el("tr", null, ...["file", "bytes", "lines", "records", "spans", "skipped", "note"]
        .map((name) => el("th", {text: name})))));
    const body = el("tbody");
    for (const file of status.files) {
      const notes = [];
      if (file.compressed) notes.push("gzip");
      if (file.waiting) notes.push("last line incomplete: waiting");
      if (file.gone) notes.push("gone");
      if (file.duplicate_lines) notes.push(file.duplicate_lines + " duplicate lines");
      if (file.error) notes.push(file.error);
      for (const skip of file.skipped) notes.push("skipped at byte " + skip.offset + ": " + skip.reason);
      body.append(el("tr", null,
        el("td", {text: file.path}), el("td", {class: "num", text: file.size}),
        el("td", {class: "num", text: file.lines}), el("td", {class: "num", text: file.records}),
        el("td", {class: "num", text: file.spans}),
        el("td", {class: "num" + (file.skipped_lines ? " error" : ""), text: file.skipped_lines}),
        el("td", {class: "note", text: notes.join("; ")})));
    }
    table.append(body);
    document.getElementById("status-files").replaceChildren(table);
  }

  search.addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(load, 200);
  });
  load();
  loadStatus();
  setInterval(load, 2000);
  setInterval(loadStatus, 5000);
})();

// Helpers shared by the pages. Every value that comes from the logs goes into the document as text
// (textContent, text nodes, properties such as title), never parsed as markup.
"use strict";

const OV = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";

  // el("a", {href: "/x", class: "c", text: "label", onclick: f}, child, "text child", ...)
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    setProps(node, props);
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setProps(node, attrs);
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function setProps(node, props) {
    if (!props) return;
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.setAttribute("class", value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "title" && node instanceof HTMLElement) node.title = String(value);
      else node.setAttribute(key, String(value));
    }
  }

  // An SVG tooltip: a <title> child whose text is set as text.
  function tip(text) {
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = text;
    return title;
  }

  async function getJSON(url) {
    const response = await fetch(url, {headers: {Accept: "application/json"}, cache: "no-store"});
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    return {status: response.status, ok: response.ok, body};
  }

  function clock(iso) {  // "2026-11-23T10:00:00.123456Z" -> "10:00:00.123"
    return typeof iso === "string" ? iso.slice(11, 23) : "";
  }

  function day(iso) {
    return typeof iso === "string" ? iso.slice(0, 10) : "";
  }

  function duration(ms) {
    if (!isFinite(ms)) return "";
    const abs = Math.abs(ms);
    if (abs < 1) return (ms * 1000).toFixed(0) + " µs";
    if (abs < 1000) return ms.toFixed(abs < 10 ? 1 : 0) + " ms";
    if (abs < 60000) return (ms / 1000).toFixed(abs < 10000 ? 2 : 1) + " s";
    const minutes = Math.floor(abs / 60000);
    const seconds = Math.round((abs % 60000) / 1000);
    return (ms < 0 ? "-" : "") + minutes + " min " + seconds + " s";
  }

  function levelClass(severity) {
    if (severity >= 17) return "error";
    if (severity >= 13) return "warn";
    if (severity >= 9) return "info";
    return "debug";
  }

  function sessionHref(sessionId) {
    return "/sessions/" + encodeURIComponent(sessionId);
  }

  return {el, svg, tip, getJSON, clock, day, duration, levelClass, sessionHref};
})();

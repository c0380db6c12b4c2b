// segflow console: the rule editor (highlight, inline errors, live preview) and live panels.
// Plain script, no dependencies; everything else in the console is server-rendered HTML.
"use strict";

function csrfToken() {
  const input = document.querySelector('input[name="csrf"]');
  return input ? input.value : "";
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Same token classes as segflow.ui.highlight (k keyword, w word, s string, n number, o op, p punct, c comment).
const TOKEN = /(#[^\n]*)|("(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?)|(-?\d[\d._]*)|([A-Za-z_][\w-]*)|(<=|>=|!=|=|<|>)|([()[\],.])/g;

function tokens(text, keywords) {
  const out = [];
  let m;
  TOKEN.lastIndex = 0;
  while ((m = TOKEN.exec(text)) !== null) {
    const cls = m[1] ? "c" : m[2] ? "s" : m[3] ? "n" : m[4] ? (keywords.has(m[4].toLowerCase()) ? "k" : "w") : m[5] ? "o" : "p";
    out.push({ start: m.index, end: m.index + m[0].length, cls });
  }
  return out;
}

function offsetOf(text, line, column) {
  const lines = text.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  return Math.min(offset + column - 1, text.length);
}

function highlight(text, keywords, diagnostics) {
  const marks = diagnostics.filter((d) => d.severity === "error").map((d) => offsetOf(text, d.line, d.column));
  let html = "", pos = 0;
  for (const t of tokens(text, keywords)) {
    html += escapeHtml(text.slice(pos, t.start));
    const bad = marks.some((o) => o >= t.start && o < t.end);
    html += `<span class="${t.cls}${bad ? " err" : ""}">${escapeHtml(text.slice(t.start, t.end))}</span>`;
    pos = t.end;
  }
  html += escapeHtml(text.slice(pos));
  if (marks.some((o) => o >= text.length)) html += '<span class="err eol"> </span>';
  return html + "\n";
}

function setupEditor(editor) {
  const area = editor.querySelector("textarea");
  const code = editor.querySelector("code");
  const list = document.getElementById("diagnostics");
  const preview = document.getElementById("preview");
  const keywords = new Set(editor.dataset.keywords.split(" "));
  let diagnostics = [], timer = null, asked = 0;

  const paint = () => { code.innerHTML = highlight(area.value, keywords, diagnostics); };
  const showDiagnostics = () => {
    list.innerHTML = diagnostics.map((d) => `<li class="${escapeHtml(d.severity)}">${d.line}:${d.column}: ${escapeHtml(d.message)}</li>`).join("");
    editor.classList.toggle("invalid", diagnostics.some((d) => d.severity === "error"));
  };
  const showPreview = (result) => {
    if (result.preview) {
      const sample = result.preview.sample.map((m) => `<a href="/console/profiles/${encodeURIComponent(m.profile_id)}" title="${escapeHtml(m.profile_id)}">${escapeHtml(m.label)}</a>`).join(", ");
      preview.innerHTML = `<strong id="preview-count">${result.preview.count}</strong> profiles match now` + (sample ? `<div class="sample">${sample}</div>` : "");
    } else if (result.preview_error) {
      preview.innerHTML = `<span class="error">preview failed: ${escapeHtml(result.preview_error)}</span>`;
    } else {
      preview.innerHTML = '<span class="muted">Fix the errors to see a preview.</span>';
    }
  };
  const check = async () => {
    const mine = ++asked;
    const response = await fetch("/console/segments/try", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken(), Accept: "application/json" },
      body: JSON.stringify({ rule: area.value }),
      credentials: "same-origin",
    });
    if (mine !== asked) return;
    if (response.status === 401) {
      preview.innerHTML = '<span class="error">Your session ended: <a href="/console/login">log in again</a> (the rule stays here).</span>';
      return;
    }
    if (!response.ok) {  // the console answers errors as {"error": {"code", "message", "details"}}
      let message = `the check failed (${response.status})`;
      try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
      preview.innerHTML = `<span class="error">${escapeHtml(message)}</span>`;
      return;
    }
    const result = await response.json();
    diagnostics = result.diagnostics;
    paint();
    showDiagnostics();
    showPreview(result);
  };
  area.addEventListener("input", () => {
    paint();
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  });
  area.addEventListener("scroll", () => { code.parentElement.scrollTop = area.scrollTop; code.parentElement.scrollLeft = area.scrollLeft; });
  paint();
  if (area.value.trim()) check();
}

function setupLive(panel) {
  const refresh = async () => {
    const response = await fetch(panel.dataset.live, { credentials: "same-origin" });
    if (response.ok) panel.innerHTML = await response.text();
  };
  setInterval(refresh, Number(panel.dataset.every || 3000));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".editor").forEach(setupEditor);
  document.querySelectorAll("[data-live]").forEach(setupLive);
});

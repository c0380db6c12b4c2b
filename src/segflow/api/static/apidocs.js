// segflow admin API docs: try any route from the page (no dependencies, nothing from elsewhere).
"use strict";

const TOKEN_KEY = "segflow-api-token";

function target(form) {
  let path = form.dataset.path;
  for (const input of form.querySelectorAll('[data-param="path"]')) {
    path = path.replace(`{${input.name}}`, encodeURIComponent(input.value));
  }
  const query = form.querySelector('[name="query"]');
  return query && query.value.trim() ? `${path}?${query.value.trim().replace(/^\?/, "")}` : path;
}

async function send(form, out) {
  const headers = { Accept: "application/json" };
  const token = document.getElementById("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method: form.dataset.method, headers, credentials: "omit" };
  const body = form.querySelector('[name="body"]');
  if (body) {
    headers["Content-Type"] = "application/json";
    init.body = body.value;
  }
  out.hidden = false;
  out.textContent = "…";
  const url = target(form);
  try {
    const response = await fetch(url, init);
    const text = await response.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as it is */ }
    out.classList.toggle("bad", !response.ok);
    out.textContent = `${form.dataset.method} ${url}\n${response.status} ${response.statusText}\n\n${shown}`;
    out.dataset.status = String(response.status);
  } catch (e) {
    out.classList.add("bad");
    out.textContent = `${form.dataset.method} ${url}\nfailed: ${e}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const token = document.getElementById("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, token.value.trim()));
  document.getElementById("auth").addEventListener("submit", (e) => e.preventDefault());
  for (const form of document.querySelectorAll("form.try")) {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      send(form, form.parentElement.querySelector(".answer"));
    });
  }
});

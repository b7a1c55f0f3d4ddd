// mvr search page: POST /search for results, POST /explain for one result's
// late-interaction explanation. No framework, no build step, nothing loaded
// from elsewhere. Document text is inserted with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { query: "", explained: null, active: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem("mvr-api-key");
  if (key) h["X-API-Key"] = key;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({ detail: r.statusText }));
  if (r.status === 401) $("api-key-row").hidden = false;
  if (!r.ok) throw new Error(`${r.status}: ${data.detail || r.statusText}`);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function status(text) { $("status").textContent = text; }

async function loadInfo() {
  try {
    const h = await api("/health");
    $("index-info").textContent = `${h.num_documents} documents, ${h.dim}-d token vectors`;
  } catch (e) {
    $("index-info").textContent = `index not ready (${e.message})`;
  }
}

async function search(ev) {
  ev.preventDefault();
  const query = $("query").value;
  if (!query.trim()) return;
  const k = Math.max(1, parseInt($("k").value, 10) || 10);
  status("searching…");
  $("results").replaceChildren();
  $("explanation").hidden = true;
  try {
    const t0 = performance.now();
    const res = await api("/search", { queries: [query], k, return_texts: true });
    state.query = query;
    renderResults(res.results[0]);
    const ms = (performance.now() - t0).toFixed(0);
    status(`${res.results[0].ids.length} results in ${ms} ms`);
  } catch (e) {
    status(`search failed: ${e.message}`);
  }
}

function renderResults(r) {
  const list = $("results");
  r.ids.forEach((id, i) => {
    const text = r.texts ? r.texts[i] : null;
    const button = el("button", { class: "link explain", type: "button", text: "explain score" });
    const item = el("li", { class: "result", "data-id": id },
      el("div", { class: "meta" },
        el("span", { class: "rank muted", text: `#${i + 1}` }),
        el("span", { class: "rid", text: id }),
        el("span", { class: "score", text: `score ${r.scores[i].toFixed(4)}` }),
        button),
      el("p", { class: "text", text: text === null ? "(no stored text)" : text }));
    item.dataset.score = String(r.scores[i]);
    button.addEventListener("click", () => explain(id, item));
    list.append(item);
  });
}

async function explain(id, item) {
  document.querySelectorAll(".result.chosen").forEach((n) => n.classList.remove("chosen"));
  item.classList.add("chosen");
  status(`explaining ${id}…`);
  try {
    const e = await api("/explain", { query: state.query, id });
    state.explained = e;
    state.active = null;
    renderExplanation(e);
    status(`explained ${id}`);
  } catch (err) {
    status(`explain failed: ${err.message}`);
  }
}

// The highlight of each wordpiece: the best similarity among the query tokens whose
// matched vector contains it (all of them, or the active query token's only).
function highlights(e, only) {
  const best = new Map();
  e.matches.forEach((m, qi) => {
    if (only !== null && qi !== only) return;
    for (const t of m.document_tokens) {
      const cur = best.get(t) || { sim: -Infinity, queries: [] };
      cur.sim = Math.max(cur.sim, m.similarity);
      cur.queries.push(m.query_token);
      best.set(t, cur);
    }
  });
  return best;
}

// Colour intensity of a similarity: squared, so that 0.5 and 0.9 look different.
function intensity(sim) { return Math.max(0.08, Math.min(1, sim) ** 2); }

// The matched wordpieces of one query token, the nearest of them in bold.
function wordpieces(e, m) {
  const cell = el("td", { class: "wp" });
  if (!m.document_tokens.length) { cell.textContent = `vector ${m.vector}`; return cell; }
  m.document_tokens.forEach((t, n) => {
    if (n) cell.append(" ");
    const name = e.document_tokens[t].text;
    cell.append(t === m.best_token ? el("strong", { text: name }) : name);
  });
  return cell;
}

function renderText(e) {
  const box = $("doc-text");
  box.replaceChildren();
  if (e.text === null) { box.textContent = "(no stored text: nothing to highlight)"; return; }
  const best = highlights(e, state.active);
  const spans = e.document_tokens
    .map((t, i) => ({ ...t, i }))
    .filter((t) => t.start !== null && best.has(t.i))
    .sort((a, b) => a.start - b.start);
  let at = 0;
  for (const t of spans) {
    if (t.start < at) continue;
    box.append(e.text.slice(at, t.start));
    const h = best.get(t.i);
    const mark = el("mark", {
      class: "tok", "data-token": String(t.i), "data-vector": String(t.vector),
      "data-sim": h.sim.toFixed(4), title: `${h.queries.join(", ")} → ${t.text}: ${h.sim.toFixed(3)}`,
      text: e.text.slice(t.start, t.end) });
    mark.style.setProperty("--a", intensity(h.sim).toFixed(3));
    box.append(mark);
    at = t.end;
  }
  box.append(e.text.slice(at));
}

function renderExplanation(e) {
  $("explanation").hidden = false;
  $("explain-title").textContent = `Why ${e.id} scores ${e.score.toFixed(4)}`;
  const ok = Math.abs(e.total - e.score) <= 1e-3 * Math.max(1, Math.abs(e.score));
  const summary = $("explain-summary");
  summary.replaceChildren(
    `${e.query_tokens.length} query tokens × ${e.num_vectors} stored vectors `
    + `(pool_factor ${e.pooling.pool_factor}). Vectors: `,
    el("span", { class: "badge", id: "vectors-used", text: e.vectors }),
    e.vectors === "stored" && e.alignment !== null
      ? ` (aligned to clusters, min cosine ${e.alignment.toFixed(3)})` : "",
    e.truncated ? " Text truncated to the encoder's budget." : "");
  renderText(e);
  const body = $("contributions").querySelector("tbody");
  body.replaceChildren();
  e.matches.forEach((m, qi) => {
    const share = e.total !== 0 ? (100 * m.similarity / e.total).toFixed(1) + "%" : "";
    const bar = el("span", { class: "bar" });
    bar.style.width = `${Math.max(0, Math.min(1, m.similarity)) * 60}px`;
    const row = el("tr", { "data-query-token": String(qi) },
      el("td", { class: "muted", text: String(qi) }),
      el("td", { class: "qt", text: m.query_token }),
      wordpieces(e, m),
      el("td", { class: "sim" }, bar, m.similarity.toFixed(4)),
      el("td", { class: "muted", text: share }));
    row.addEventListener("click", () => {
      state.active = state.active === qi ? null : qi;
      body.querySelectorAll("tr").forEach((r) => r.classList.toggle("active",
        state.active !== null && Number(r.dataset.queryToken) === state.active));
      renderText(e);
    });
    body.append(row);
  });
  $("total").textContent = e.total.toFixed(4);
  const note = $("total-note");
  note.replaceChildren(el("span", { class: ok ? "ok" : "bad",
    text: `${ok ? "=" : "≠"} exact MaxSim score ${e.score.toFixed(4)} (as /search)` }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", search);
  $("api-key").addEventListener("change", (ev) => sessionStorage.setItem("mvr-api-key", ev.target.value));
  loadInfo();
});

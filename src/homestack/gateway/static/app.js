// The homestack status page: polls the admin API once a second and follows one runner's log.
// Plain browser JavaScript, no build step and no outside requests, so it works on an offline box.
"use strict";

const POLL_MS = 1000;
const RETRY_MS = 2000;
const KEY_STORAGE = "homestack.adminKey";
const REQUESTS_FETCHED = 200; // the most the gateway keeps for /admin/requests
const PROMOTION_EVENTS_SHOWN = 20; // the latest promotion events, newest first
const REQUESTS_SHOWN = 15;
const RATE_WINDOW_S = 60;
const LOG_TAIL = 200;
const LOG_KEEP = 1000;

const $ = (id) => document.getElementById(id);

const ui = {
  status: $("status"),
  announce: $("announce"),
  keyForm: $("key-form"),
  keyReason: $("key-reason"),
  keyInput: $("key-input"),
  fleetBody: document.querySelector("#fleet tbody"),
  devices: $("devices"),
  requestsBody: document.querySelector("#requests tbody"),
  requestsEmpty: $("requests-empty"),
  promotionsBody: document.querySelector("#promotions tbody"),
  promotionsEmpty: $("promotions-empty"),
  logSelect: $("log-model"),
  log: $("log"),
};

const state = {
  rows: new Map(), // model name -> {tr, cells, buttons, model, ttlAt}
  deviceBars: new Map(), // device id -> elements
  busy: new Map(), // model name -> "load" | "unload" while an action is pending
  waitingForKey: false,
  polling: false,
  pollAgain: false,
  pollTimer: 0,
  clockSkew: 0, // server clock minus this browser's, in seconds (request times are the server's)
  newestRequest: null,
  log: { name: null, abort: null, lines: [], retryTimer: 0 },
};

// ---- the admin API ----------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, usedKey) {
    super(message);
    this.status = status;
    this.usedKey = usedKey; // the key this request sent, to tell a refusal from a stale answer
  }
  get needsKey() {
    return this.status === 401 || this.status === 403;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.set("Authorization", "Bearer " + key);
  let resp;
  try {
    resp = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "cannot reach the gateway", key);
  }
  const date = Date.parse(resp.headers.get("date") || "");
  if (!Number.isNaN(date)) {
    // Date has a one-second resolution: only a larger difference is a real clock skew.
    const skew = (date - Date.now()) / 1000;
    state.clockSkew = Math.abs(skew) > 2 ? skew : 0;
  }
  if (!resp.ok) throw new ApiError(resp.status, await errorMessage(resp), key);
  return resp;
}

async function errorMessage(resp) {
  const text = await resp.text().catch(() => "");
  try {
    return JSON.parse(text).error.message;
  } catch {
    return text.trim() || `HTTP ${resp.status}`;
  }
}

const getJSON = async (path) => (await api(path)).json();

// ---- polling ----------------------------------------------------------------------------

async function poll() {
  clearTimeout(state.pollTimer);
  if (state.polling) {
    state.pollAgain = true; // an action finished mid-poll: poll once more right after
    return;
  }
  state.polling = true;
  let next = POLL_MS;
  try {
    const [running, plan, requests, history] = await Promise.all([
      getJSON("/admin/running?all=1"),
      getJSON("/admin/plan"),
      getJSON(`/admin/requests?limit=${REQUESTS_FETCHED}`),
      getJSON(`/admin/history?limit=${PROMOTION_EVENTS_SHOWN}`),
    ]);
    const rates = tokenRates(requests.requests);
    renderFleet(running.running, rates);
    renderDevices(plan.devices);
    renderRequests(requests.requests);
    renderPromotions(history);
    renderLogChoices(running.running);
    const ready = running.running.filter((m) => m.state === "ready").length;
    setStatus(`Connected: ${running.running.length} models, ${ready} ready.`);
  } catch (err) {
    if (err instanceof ApiError && err.needsKey) {
      next = askForKey(err) ? null : 0; // resumes when a key is entered; a stale refusal retries now
    } else {
      setStatus(`Cannot update: ${describe(err)}. Retrying…`, true);
      next = RETRY_MS;
    }
  } finally {
    state.polling = false;
  }
  if (state.pollAgain) {
    state.pollAgain = false;
    next = 0;
  }
  if (next !== null) state.pollTimer = setTimeout(poll, next);
}

function setStatus(text, isError = false) {
  // Only real changes reach the live region, so a screen reader is not told the same thing every second.
  if (ui.status.textContent !== text) ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

// Action outcomes get their own live region, so the next poll's status line does not cut them off.
function announce(text) {
  ui.announce.textContent = text;
}

function describe(err) {
  return err instanceof Error ? err.message : String(err);
}

// Tokens per second per model over the last minute, from the request log (keyed by runner, not alias).
function tokenRates(entries) {
  const now = Date.now() / 1000 + state.clockSkew;
  let window = RATE_WINDOW_S;
  // When the gateway's short log does not reach back a minute, divide by the span it does cover.
  if (entries.length >= REQUESTS_FETCHED && entries.length > 0) {
    window = Math.min(window, Math.max(1, now - entries[0].ts));
  }
  const sums = new Map();
  for (const e of entries) {
    if (now - e.ts > RATE_WINDOW_S || !e.tokens_out) continue;
    const name = e.runner || e.model;
    sums.set(name, (sums.get(name) || 0) + e.tokens_out);
  }
  const rates = new Map();
  for (const [name, sum] of sums) rates.set(name, sum / window);
  return rates;
}

// ---- the fleet table --------------------------------------------------------------------

function renderFleet(models, rates) {
  const seen = new Set();
  for (const model of models) {
    seen.add(model.name);
    let row = state.rows.get(model.name);
    if (!row) {
      row = makeRow(model.name);
      state.rows.set(model.name, row);
    }
    ui.fleetBody.appendChild(row.tr); // keeps the server's order; moving a node keeps its focus state
    updateRow(row, model, rates.get(model.name) || 0);
  }
  for (const [name, row] of state.rows) {
    if (!seen.has(name)) {
      row.tr.remove();
      state.rows.delete(name);
    }
  }
}

function makeRow(name) {
  const tr = el("tr");
  tr.dataset.model = name;
  const cells = {};
  const nameCell = el("th", { scope: "row" });
  cells.name = el("span", { className: "model-name", text: name });
  cells.kind = el("span", { className: "sub" });
  nameCell.append(cells.name, cells.kind);
  tr.append(nameCell);
  for (const key of ["state", "estimated", "measured", "queue", "inflight", "ttl", "rate", "swap"]) {
    cells[key] = el("td");
    cells[key].dataset.col = key;
    if (!["state", "swap"].includes(key)) cells[key].className = "num";
    tr.append(cells[key]);
  }
  cells.badge = el("span", { className: "badge" });
  cells.state.append(cells.badge);
  const actions = el("td", { className: "actions" });
  const load = el("button", { type: "button", text: "Load", className: "btn" });
  const unload = el("button", { type: "button", text: "Unload", className: "btn secondary" });
  load.setAttribute("aria-label", `Load ${name}`);
  unload.setAttribute("aria-label", `Unload ${name}`);
  load.addEventListener("click", () => act(name, "load"));
  unload.addEventListener("click", () => act(name, "unload"));
  const error = el("p", { className: "row-error" });
  actions.append(load, unload, error);
  tr.append(actions);
  return { tr, cells, buttons: { load, unload }, error, model: null, ttlAt: 0 };
}

function updateRow(row, model, rate) {
  const c = row.cells;
  row.model = model;
  row.ttlAt = performance.now();
  setText(c.kind, model.pinned ? `${model.runner} · pinned` : model.runner);
  setText(c.badge, model.state);
  c.badge.className = `badge state-${model.state}`;
  setText(c.estimated, bytes(model.memory_estimated));
  c.estimated.title = model.memory_basis ? `basis: ${model.memory_basis}` : "";
  setText(c.measured, bytes(model.memory_measured));
  setText(c.queue, model.limit ? `${model.queue} / ${model.limit}` : String(model.queue));
  setText(c.inflight, String(model.inflight));
  setText(c.rate, rate > 0 ? rate.toFixed(rate < 10 ? 2 : 1) : "—");
  setText(c.swap, model.last_swap_reason || "—");
  renderTtl(row);
  updateButtons(row);
}

function updateButtons(row) {
  const { name, state: now } = row.model;
  const busy = state.busy.get(name);
  row.buttons.load.disabled = Boolean(busy) || now !== "stopped";
  row.buttons.unload.disabled = Boolean(busy) || now === "stopped";
  setText(row.buttons.load, busy === "load" ? "Loading…" : "Load");
  setText(row.buttons.unload, busy === "unload" ? "Unloading…" : "Unload");
}

// The TTL counts down between polls; it only runs while the model is idle (the server resets it on use).
function renderTtl(row) {
  const m = row.model;
  let text;
  if (m.pinned) text = "pinned";
  else if (m.ttl_remaining === null || m.ttl_remaining === undefined) text = m.ttl === 0 ? "never" : "—";
  else {
    const idle = m.inflight === 0 && m.queue === 0;
    const elapsed = idle ? (performance.now() - row.ttlAt) / 1000 : 0;
    text = duration(Math.max(0, m.ttl_remaining - elapsed));
  }
  setText(row.cells.ttl, text);
}

async function act(name, action) {
  const row = state.rows.get(name);
  state.busy.set(name, action);
  setText(row.error, "");
  updateButtons(row);
  announce(action === "load" ? `Loading ${name}…` : `Unloading ${name}…`);
  try {
    await api(`/admin/models/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    announce(action === "load" ? `${name} is ready.` : `${name} is stopped.`);
  } catch (err) {
    const keyAsked = err instanceof ApiError && err.needsKey && askForKey(err);
    if (!keyAsked) {
      const message = `${action === "load" ? "Load" : "Unload"} failed: ${describe(err)}`;
      setText(row.error, message);
      announce(`${name}: ${message}`);
    }
  } finally {
    state.busy.delete(name);
    if (!state.waitingForKey) poll();
  }
}

// ---- memory per device ------------------------------------------------------------------

function renderDevices(devices) {
  const seen = new Set();
  for (const d of devices) {
    seen.add(d.id);
    let bar = state.deviceBars.get(d.id);
    if (!bar) {
      bar = makeDevice(d);
      state.deviceBars.set(d.id, bar);
      ui.devices.append(bar.root);
    }
    updateDevice(bar, d);
  }
  for (const [id, bar] of state.deviceBars) {
    if (!seen.has(id)) {
      bar.root.remove();
      state.deviceBars.delete(id);
    }
  }
}

function makeDevice(d) {
  const root = el("div", { className: "device" });
  root.dataset.device = d.id;
  const head = el("div", { className: "device-head" });
  const title = el("h3", { text: `${d.name} ` });
  title.append(el("span", { className: "sub", text: d.id }));
  const summary = el("span", { className: "device-summary" });
  head.append(title, summary);
  const meter = el("div", { className: "bar" });
  meter.setAttribute("role", "meter");
  meter.setAttribute("aria-label", `${d.name}: held memory against the budget`);
  meter.setAttribute("aria-valuemin", "0");
  const estimated = el("div", { className: "fill est" });
  const measured = el("div", { className: "fill meas" });
  meter.append(estimated, measured);
  const totalLine = el("div", { className: "total-line" });
  const totalBar = el("div", { className: "bar thin" });
  totalBar.setAttribute("role", "meter");
  totalBar.setAttribute("aria-label", `${d.name}: budget and memory in use against the device total`);
  totalBar.setAttribute("aria-valuemin", "0");
  const used = el("div", { className: "fill used" });
  const budget = el("div", { className: "fill budget" });
  totalBar.append(used, budget);
  const totalText = el("span", { className: "sub" });
  totalLine.append(totalBar, totalText);
  root.append(head, meter, totalLine);
  return { root, summary, meter, estimated, measured, totalBar, used, budget, totalText };
}

function updateDevice(bar, d) {
  const measured = d.held_measured ?? null; // only RAM is measured per process
  const parts = [`${bytes(d.held_estimated)} estimated`];
  // The gateway samples every few seconds: a fresh runner has no figure yet, which is not zero bytes.
  if (measured) parts.push(`${bytes(measured)} measured`);
  else if (measured === 0 && d.held_estimated > 0) parts.push("not yet measured");
  setText(bar.summary, `${parts.join(" · ")} of ${bytes(d.budget)} budget`);
  bar.estimated.style.width = percent(d.held_estimated, d.budget);
  bar.measured.style.width = percent(measured || 0, d.budget);
  bar.meter.classList.toggle("over", d.held_estimated > d.budget || (measured || 0) > d.budget);
  bar.meter.setAttribute("aria-valuemax", String(d.budget));
  bar.meter.setAttribute("aria-valuenow", String(Math.min(d.held_estimated, d.budget)));
  bar.meter.setAttribute("aria-valuetext", bar.summary.textContent);

  const inUse = Math.max(0, d.total - d.free);
  bar.used.style.width = percent(inUse, d.total);
  bar.budget.style.width = percent(d.budget, d.total);
  const share = d.total > 0 ? Math.round((100 * d.budget) / d.total) : 0;
  const totalText = `whole device ${bytes(d.total)}: ${bytes(inUse)} in use by all processes, ` +
    `${bytes(d.free)} free; the budget is ${share}% of it`;
  setText(bar.totalText, totalText);
  bar.totalBar.setAttribute("aria-valuemax", String(d.total));
  bar.totalBar.setAttribute("aria-valuenow", String(Math.min(inUse, d.total)));
  bar.totalBar.setAttribute("aria-valuetext", totalText);
}

// ---- recent requests --------------------------------------------------------------------

function renderRequests(entries) {
  const newest = entries.length ? entries[entries.length - 1].request_id + entries.length : null;
  ui.requestsEmpty.hidden = entries.length > 0;
  if (newest === state.newestRequest) return; // nothing new: leave the table (and any selection) alone
  state.newestRequest = newest;
  const rows = entries.slice(-REQUESTS_SHOWN).reverse().map((e) => {
    const tr = el("tr");
    const status = el("td", { className: `num status-${String(e.status)[0]}xx`, text: String(e.status ?? "—") });
    if (e.outcome && e.outcome !== "ok") status.title = e.outcome;
    tr.append(
      el("td", { text: clock(e.ts) }),
      el("td", { text: e.model || "—" }),
      el("td", { className: "path", text: `${e.stream ? "stream " : ""}${e.path}` }),
      status,
      el("td", { className: "num", text: ms(e.duration_ms) }),
      el("td", { className: "num", text: ms(e.ttft_ms) }),
      el("td", { className: "num", text: `${e.tokens_in ?? "—"} / ${e.tokens_out ?? "—"}` }),
    );
    return tr;
  });
  ui.requestsBody.replaceChildren(...rows);
}

// ---- promotions -----------------------------------------------------------------------------

function renderPromotions(history) {
  const running = Object.entries(history.active).map(([route, p]) => ({
    at: "now", route, event: `${p.phase} ${p.share}%`, from: p.from, to: p.to, who: "", detail: "running",
  }));
  const rows = [...running, ...history.events.slice().reverse()].map((e) => {
    const tr = el("tr");
    const scores = e.scores ? Object.entries(e.scores).map(([m, s]) => `${m} ${s.toFixed(2)}`).join(", ") : "";
    const step = e.event === "step" ? `${e.kind} ${e.share}% for ${e.seconds}s` : "";
    tr.append(
      el("td", { text: e.at }),
      el("td", { text: e.route || "—" }),
      el("td", { className: `event-${e.event}`, text: e.gate ? `${e.event} ${e.gate}` : e.event }),
      el("td", { text: `${e.from ?? "—"} → ${e.to ?? "—"}` }),
      el("td", { text: e.who || "—" }),
      el("td", { text: [e.reason, e.detail, scores, step].filter(Boolean).join("; ") || "—" }),
    );
    return tr;
  });
  ui.promotionsEmpty.hidden = rows.length > 0;
  ui.promotionsBody.replaceChildren(...rows);
}

// ---- the runner log ---------------------------------------------------------------------

function renderLogChoices(models) {
  const names = models.map((m) => m.name);
  const current = [...ui.logSelect.options].map((o) => o.value);
  if (names.join("\n") !== current.join("\n")) {
    const keep = state.log.name;
    ui.logSelect.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(keep)) ui.logSelect.value = keep;
  }
  if (!state.log.name && names.length) {
    const first = models.find((m) => m.state === "ready") || models[0];
    ui.logSelect.value = first.name;
    followLog(first.name);
  }
}

// EventSource cannot send an Authorization header, so the stream is read with fetch() and parsed here.
async function followLog(name) {
  stopLog();
  const controller = new AbortController();
  Object.assign(state.log, { name, abort: controller, lines: [] });
  ui.log.textContent = "";
  try {
    const resp = await api(`/admin/logs/${encodeURIComponent(name)}?follow=1&lines=${LOG_TAIL}`,
      { signal: controller.signal });
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:"));
        if (data.length) appendLog(data.map((l) => l.slice(5).replace(/^ /, "")).join("\n"));
      }
    }
    appendLog("[log stream closed; reconnecting]");
  } catch (err) {
    if (controller.signal.aborted) return; // another model was chosen
    if (err instanceof ApiError && err.needsKey && askForKey(err)) return;
    appendLog(`[log unavailable: ${describe(err)}; retrying]`);
  }
  if (!controller.signal.aborted) state.log.retryTimer = setTimeout(() => followLog(name), RETRY_MS);
}

function stopLog() {
  clearTimeout(state.log.retryTimer);
  if (state.log.abort) state.log.abort.abort();
  state.log.abort = null;
}

function appendLog(line) {
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 24;
  state.log.lines.push(line);
  if (state.log.lines.length > LOG_KEEP) state.log.lines.splice(0, state.log.lines.length - LOG_KEEP);
  ui.log.textContent = state.log.lines.join("\n");
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight; // follow the tail unless the reader scrolled up
}

// ---- the admin key ----------------------------------------------------------------------

// Show the key form; false when the refusal was for an older key than the one now stored.
function askForKey(err) {
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored && err.usedKey !== stored) return false;
  const hadKey = Boolean(stored);
  sessionStorage.removeItem(KEY_STORAGE);
  stopLog();
  state.log.name = null;
  const firstTime = !state.waitingForKey;
  state.waitingForKey = true;
  ui.keyReason.textContent = hadKey
    ? `That key was refused: ${err.message}.`
    : "This gateway needs an admin key to show its status.";
  ui.keyForm.hidden = false;
  setStatus("Waiting for an admin key.", true);
  if (firstTime) ui.keyInput.focus();
  return true;
}

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = ui.keyInput.value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  ui.keyInput.value = "";
  ui.keyForm.hidden = true;
  state.waitingForKey = false;
  setStatus("Checking the key…");
  poll();
});

ui.logSelect.addEventListener("change", () => followLog(ui.logSelect.value));

// ---- small helpers ----------------------------------------------------------------------

function el(tag, props = {}) {
  const node = document.createElement(tag);
  const { text, ...rest } = props;
  Object.assign(node, rest);
  if (text !== undefined) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function percent(part, whole) {
  return whole > 0 ? `${Math.min(100, (100 * part) / whole).toFixed(2)}%` : "0%";
}

function duration(seconds) {
  const s = Math.ceil(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function ms(value) {
  if (value === null || value === undefined) return "—";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

function clock(ts) {
  return new Date((ts - state.clockSkew) * 1000).toLocaleTimeString([], { hour12: false });
}

setInterval(() => {
  for (const row of state.rows.values()) if (row.model) renderTtl(row);
}, 250);
poll();

// The batches page: everything it shows comes from the /v1 routes, asked with the
// key kept in this tab's sessionStorage and sent as an Authorization header.
// EventSource cannot send headers, so the event stream is read with fetch and a
// streaming body reader; a dropped stream reconnects with Last-Event-ID.
"use strict";

const KEY_NAME = "batchline.key";
// Browsers open at most six HTTP/1.1 connections per origin: four live streams leave
// room for the page's other requests. Batches beyond them are re-read every 5 s.
const MAX_STREAMS = 4;
const FINAL = new Set(["completed", "partial", "failed", "cancelled"]);
const STAGES = ["preflight", "writing", "qc", "delivery"];

const $ = (selector) => document.querySelector(selector);
const key = () => sessionStorage.getItem(KEY_NAME);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${key()}` };
  const response = await fetch(path, { ...options, headers });
  const json = (response.headers.get("content-type") || "").includes("json");
  const body = json ? await response.json() : null;
  if (!response.ok) {
    if (response.status === 401) forgetKey();
    throw new ApiError(response.status, (body && body.error) || response.statusText);
  }
  return body;
}

function parseEvent(block) {
  const fields = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const cut = line.indexOf(":");
    fields[line.slice(0, cut)] = line.slice(cut + 1).replace(/^ /, "");
  }
  if (!fields.event) return null;
  return { id: fields.id, kind: fields.event, data: JSON.parse(fields.data) };
}

// Follow a batch's events until its final status (or until signal aborts).
async function follow(batchId, onEvent, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${key()}`, Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const url = `/v1/batches/${encodeURIComponent(batchId)}/events`;
      const response = await fetch(url, { headers, signal });
      if (!response.ok) return;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (!event) continue;
          lastId = event.id;
          onEvent(event);
          if (event.kind === "status") return;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    await sleep(2000); // the stream broke before the final status: resume it
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function percentText(progress) {
  return `${Math.floor(progress.progress_percentage)} %`;
}

// ---- the list ------------------------------------------------------------------------

const rows = new Map(); // batch_id -> {tr, status, streaming}
let streams = 0;
const listAbort = new AbortController();

function listRow(batch) {
  const tr = document.createElement("tr");
  tr.dataset.batchId = batch.batch_id;
  const link = document.createElement("a");
  link.href = `/batches/${encodeURIComponent(batch.batch_id)}`;
  link.textContent = batch.batch_id;
  const name = document.createElement("td");
  name.append(link);
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  const progress = document.createElement("td");
  progress.className = "progress";
  progress.append(bar, document.createElement("span"));
  tr.append(name, cell(batch.project_uuid), cell(batch.priority), cell(batch.status, "status"),
    progress, cell("", "eta"), cell("", "failed"), cell(batch.created_at.slice(0, 19)));
  return tr;
}

function showProgress(entry, progress) {
  const tr = entry.tr;
  entry.status = progress.status;
  tr.querySelector(".status").textContent = progress.status;
  tr.querySelector("progress").value = progress.progress_percentage;
  tr.querySelector(".progress span").textContent = percentText(progress);
  tr.querySelector(".eta").textContent = FINAL.has(progress.status) ? "" : progress.eta_human;
  const failed = tr.querySelector(".failed");
  failed.textContent = progress.failed;
  failed.classList.toggle("error", progress.failed > 0);
}

async function stream(batchId, entry) {
  streams += 1;
  entry.streaming = true;
  try {
    await follow(batchId, (event) => {
      if (event.kind === "progress") showProgress(entry, event.data);
      if (event.kind === "status") entry.tr.querySelector(".status").textContent = event.data.status;
    }, listAbort.signal);
  } finally {
    streams -= 1;
    entry.streaming = false;
  }
}

async function refreshOne(batchId, entry) {
  try {
    showProgress(entry, await api(`/v1/batches/${encodeURIComponent(batchId)}`));
  } catch (error) { /* shown at the next round */ }
}

function tend() {
  for (const [batchId, entry] of rows) {
    if (entry.streaming || (entry.read && FINAL.has(entry.status))) continue;
    if (streams < MAX_STREAMS && !FINAL.has(entry.status)) stream(batchId, entry);
    else refreshOne(batchId, entry).then(() => { entry.read = true; });
  }
}

async function loadList() {
  const page = await api("/v1/batches?limit=50");
  const body = $("#rows");
  const seen = new Set();
  page.batches.forEach((batch, index) => {
    seen.add(batch.batch_id);
    let entry = rows.get(batch.batch_id);
    if (!entry) {
      entry = { tr: listRow(batch), status: batch.status, streaming: false, read: false };
      rows.set(batch.batch_id, entry);
    }
    if (body.children[index] !== entry.tr) body.insertBefore(entry.tr, body.children[index] || null);
  });
  for (const [batchId, entry] of rows) {
    if (!seen.has(batchId)) { entry.tr.remove(); rows.delete(batchId); }
  }
}

async function showList() {
  $("#list").hidden = false;
  for (;;) {
    try {
      await loadList();
      tend();
    } catch (error) {
      if (error.status === 401) return;
    }
    await sleep(5000);
  }
}

// ---- one batch -----------------------------------------------------------------------

let batchPriority = ""; // in batch_status's answer, not in the stream's progress events

function showBatchProgress(progress) {
  if (progress.priority) batchPriority = progress.priority;
  $("#bar").value = progress.progress_percentage;
  $("#percent").textContent = percentText(progress);
  $("#eta").textContent = FINAL.has(progress.status) ? "" : `ETA ${progress.eta_human}`;
  const parts = [`status ${progress.status}`, `${progress.total} orders`,
    `${progress.completed} completed`, `${progress.failed} failed`, `${progress.cancelled} cancelled`];
  if (batchPriority) parts.splice(1, 0, `priority ${batchPriority}`);
  $("#facts").textContent = parts.join(" · ");
  const body = $("#stages");
  body.replaceChildren(...STAGES.map((stage) => {
    const counts = (progress.stages || {})[stage] || { done: 0, failed: 0 };
    const tr = document.createElement("tr");
    tr.append(cell(stage), cell(counts.done), cell(counts.failed, counts.failed ? "error" : ""));
    return tr;
  }));
  showControls(progress.status);
}

let scope = "read";
const CONTROLS = [
  ["pause", "write", (s) => s === "running"],
  ["resume", "write", (s) => s === "paused"],
  ["cancel", "write", (s) => !FINAL.has(s)],
  ["recover", "admin", (s) => s === "partial" || s === "failed"],
];
const RANK = { read: 0, write: 1, admin: 2 };

function showControls(status) {
  const batchId = document.body.dataset.batchId;
  const buttons = CONTROLS.filter(([, needed]) => RANK[scope] >= RANK[needed]).map(([action, , allowed]) => {
    const button = document.createElement("button");
    button.type = "button";
    button.id = `do-${action}`;
    button.textContent = action;
    button.disabled = !allowed(status);
    button.addEventListener("click", () => control(batchId, action));
    return button;
  });
  $("#controls").replaceChildren(...buttons);
}

async function control(batchId, action) {
  const result = $("#control-result");
  try {
    const options = { method: "POST" };
    if (action === "recover") {
      options.body = "{}";
      options.headers = { "Content-Type": "application/json" };
    }
    const answer = await api(`/v1/batches/${encodeURIComponent(batchId)}/${action}`, options);
    result.className = "";
    result.textContent = action === "recover"
      ? `recovery batch ${answer.recovery_batch_id}: ${answer.documents_to_retry} orders`
      : `${action}: ${answer.status || "done"}`;
    await showBatch(false);
  } catch (error) {
    result.className = "error";
    result.textContent = `${action} refused (${error.status}): ${error.message}`;
  }
}

function batchLink(batchId) {
  const link = document.createElement("a");
  link.href = `/batches/${encodeURIComponent(batchId)}`;
  link.textContent = batchId;
  return link;
}

// The recovery links of batch_status: the batch it recovers, the batches recovering it.
function showLinks(status) {
  const parts = [];
  if (status.origin_batch_id) {
    parts.push(`recovery round ${status.recovery_round} of `, batchLink(status.origin_batch_id));
  }
  (status.recovered_by || []).forEach((batchId, index) => {
    parts.push(index ? ", " : (parts.length ? " · recovered by " : "recovered by "));
    parts.push(batchLink(batchId));
  });
  $("#links").replaceChildren(...parts);
}

function showFailures(analysis) {
  const box = $("#failures");
  if (!analysis.total_failures) {
    box.textContent = "No failed orders.";
    return;
  }
  const summary = document.createElement("p");
  summary.textContent = `${analysis.total_failures} failed (${analysis.error_rate} %): ` +
    `${analysis.recoverable_count} recoverable, ${analysis.manual_count} need a fix, ` +
    `${analysis.permanent_count} permanent.`;
  const categories = document.createElement("p");
  categories.textContent = Object.entries(analysis.errors_by_category || {})
    .map(([name, count]) => `${name}: ${count}`).join(" · ");
  const list = document.createElement("ul");
  list.id = "recommendations";
  for (const advice of analysis.recommendations || []) {
    const item = document.createElement("li");
    item.textContent = advice.message;
    if (advice.command) {
      const code = document.createElement("code");
      code.textContent = advice.command;
      item.append(" ", code);
    }
    list.append(item);
  }
  box.replaceChildren(summary, categories, list);
}

const batchAbort = new AbortController();
let batchStreaming = false;

async function showBatch(start = true) {
  const batchId = document.body.dataset.batchId;
  $("#batch").hidden = false;
  $("#title").textContent = batchId;
  try {
    const status = await api(`/v1/batches/${encodeURIComponent(batchId)}`);
    showBatchProgress(status);
    showLinks(status);
    showFailures(await api(`/v1/batches/${encodeURIComponent(batchId)}/failures`));
    if (!FINAL.has(status.status) && !batchStreaming) {
      batchStreaming = true;
      follow(batchId, (event) => {
        if (event.kind === "progress") showBatchProgress(event.data);
        if (event.kind === "status") showBatch(false);
      }, batchAbort.signal).finally(() => { batchStreaming = false; });
    }
  } catch (error) {
    $("#facts").textContent = error.status === 404 ? "No such batch for this key." : error.message;
  }
}

// ---- the key ---------------------------------------------------------------------------

function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
  listAbort.abort();
  batchAbort.abort();
  location.reload();
}

async function start() {
  const me = await api("/v1/me");
  scope = me.scope;
  $("#who").textContent = `key ${me.name} (${me.scope})`;
  $("#logout").hidden = false;
  $("#login").hidden = true;
  if (document.body.dataset.view === "batch") showBatch();
  else showList();
}

function login(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_NAME, $("#key").value.trim());
  $("#key").value = "";
  start().catch((error) => {
    sessionStorage.removeItem(KEY_NAME);
    $("#login").hidden = false;
    $("#login-error").textContent = `That key was refused (${error.status}): ${error.message}`;
  });
}

$("#login").addEventListener("submit", login);
$("#logout").addEventListener("click", forgetKey);
if (key()) {
  start().catch(() => { $("#login").hidden = false; });
} else {
  $("#login").hidden = false;
}

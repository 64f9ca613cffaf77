// ragkb portal: sign in with a tenant key (kept in sessionStorage, never in a URL),
// upload with progress, watch ingestion, browse documents, ask with streamed answers and
// clickable citations. Every text from the API is set with textContent (never innerHTML).
"use strict";

const KEY_STORAGE = "ragkb.apiKey";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

let apiKey = sessionStorage.getItem(KEY_STORAGE);
let lastQueryId = null;
let currentCitations = [];
const watched = new Map(); // document id -> upload list item

// ---------- HTTP ----------
function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${apiKey}`, ...extra };
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (response.status === 401 || response.status === 403) {
    const message = await errorMessage(response);
    if (path === "/v1/me") throw new Error(message);
    signOut(message);
    throw new Error(message);
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  const type = response.headers.get("content-type") || "";
  return type.includes("application/json") ? response.json() : response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

const listOf = (body, field) => (Array.isArray(body) ? body : (body && body[field]) || []);

// ---------- sign in / out ----------
async function signIn(key) {
  apiKey = key;
  const me = await api("/v1/me");
  sessionStorage.setItem(KEY_STORAGE, key);
  $("tenant-name").textContent = me.tenant.name || me.tenant.slug;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  refreshDocuments().catch((err) => { $("docs-error").textContent = err.message; });
  offerLinkedDocument();
}

// Chat answers link to "/#document=ID&page=N": offer to open it once signed in (a button,
// because browsers block windows that no click opened).
function offerLinkedDocument() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const documentId = params.get("document");
  if (!documentId) return;
  const page = Number.parseInt(params.get("page") || "", 10) || null;
  $("linked-open").onclick = () => openDocument(documentId, page);
  $("linked-doc").hidden = false;
}

function signOut(reason) {
  apiKey = null;
  sessionStorage.removeItem(KEY_STORAGE);
  watched.clear();
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").value = "";
  $("sign-in-error").textContent = reason || "";
  $("uploads").replaceChildren();
  $("docs").tBodies[0].replaceChildren();
  $("answer-box").hidden = true;
}

// ---------- documents ----------
async function refreshDocuments() {
  const params = new URLSearchParams({ limit: "200" });
  const status = $("status-filter").value;
  if (status) params.set("status", status);
  const body = await api(`/v1/documents?${params}`);
  const filter = $("doc-filter").value.trim().toLowerCase();
  const docs = listOf(body, "items").filter((d) => !filter || d.filename.toLowerCase().includes(filter));
  const rows = docs.map(documentRow);
  $("docs").tBodies[0].replaceChildren(...rows);
  $("docs-empty").hidden = rows.length > 0;
  $("docs-error").textContent = "";
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function documentRow(doc) {
  const tr = document.createElement("tr");
  tr.dataset.id = doc.id;
  const progress = doc.status === "ready" || doc.status === "failed" ? "" : ` ${Math.round(doc.progress || 0)}%`;
  const statusCell = cell(`${doc.status}${progress}`, `status-${doc.status}`);
  if (doc.error) statusCell.title = doc.error;
  const uploaded = doc.created_at ? new Date(doc.created_at).toLocaleString() : "";
  const fileCell = cell(doc.filename, "file");
  const about = [(doc.organisations || []).join(", "), doc.document_type, doc.period].filter(Boolean).join(" · ");
  if (about) {
    const line = document.createElement("div");
    line.className = "about muted";
    line.textContent = about;
    fileCell.append(line);
  }
  if (doc.metadata && Object.keys(doc.metadata).length) fileCell.title = `metadata: ${JSON.stringify(doc.metadata)}`;
  tr.append(
    fileCell, cell(doc.media_type), cell(doc.page_count), cell(doc.chunk_count),
    cell(doc.version), statusCell, cell((doc.tags || []).join(", ")), cell(uploaded),
  );
  const actions = document.createElement("td");
  const wrap = document.createElement("div");
  wrap.className = "actions";
  wrap.append(
    button("Open", "secondary", () => openDocument(doc.id, null), `Open ${doc.filename}`),
    button("Delete", "danger", () => deleteDocument(doc), `Delete ${doc.filename}`),
  );
  actions.append(wrap);
  tr.append(actions);
  return tr;
}

function button(label, className, onClick, ariaLabel) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  if (ariaLabel) b.setAttribute("aria-label", ariaLabel);
  b.addEventListener("click", onClick);
  return b;
}

async function deleteDocument(doc) {
  if (!window.confirm(`Delete ${doc.filename}? Its chunks leave the index.`)) return;
  await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
  await refreshDocuments();
}

// The key never goes into a URL: fetch the file with the header, open it as a blob.
async function openDocument(documentId, page) {
  const viewer = window.open("", "_blank");
  const response = await api(`/v1/documents/${encodeURIComponent(documentId)}/file`);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob) + (page ? `#page=${page}` : "");
  if (viewer) viewer.location.href = url; else window.location.href = url;
}

// ---------- uploads ----------
function uploadFiles(files) {
  for (const file of files) uploadOne(file);
}

function uploadItem(file) {
  const li = document.createElement("li");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${file.name}`);
  const state = document.createElement("span");
  state.className = "state";
  state.textContent = "uploading";
  li.append(name, bar, state);
  $("uploads").prepend(li);
  return { li, bar, state };
}

// The metadata box: a JSON object as typed (the server checks it), or key=value lines
// (a repeated key becomes a list).
function uploadMetadata() {
  const text = $("upload-meta").value.trim();
  if (!text || text.startsWith("{")) return text;
  const metadata = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const cut = line.indexOf("=");
    if (cut <= 0) throw new Error(`metadata: write "${line}" as key=value`);
    const key = line.slice(0, cut).trim();
    const value = line.slice(cut + 1).trim();
    if (!(key in metadata)) metadata[key] = value;
    else metadata[key] = [].concat(metadata[key], value);
  }
  return JSON.stringify(metadata);
}

function uploadOne(file, item = uploadItem(file)) {
  const form = new FormData();
  form.append("files", file, file.name);
  const tags = $("upload-tags").value.trim();
  if (tags) form.append("tags", tags);
  let metadata;
  try {
    metadata = uploadMetadata();
  } catch (err) {
    showFailed(item, err.message, file, null);
    return;
  }
  if (metadata) form.append("metadata", metadata);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/documents");
  xhr.setRequestHeader("Authorization", `Bearer ${apiKey}`);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) item.bar.value = Math.round((e.loaded / e.total) * 100);
  };
  xhr.onload = () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* keep null */ }
    if (xhr.status >= 400 || !body) {
      const message = body && body.error ? body.error.message : `upload failed (${xhr.status})`;
      showFailed(item, message, file, null);
      return;
    }
    const doc = listOf(body, "documents")[0];
    const rejected = listOf(body, "rejected")[0];
    if (!doc) {
      showFailed(item, rejected ? rejected.message : "the upload was refused", file, null);
      return;
    }
    item.bar.value = 0;
    watch(doc.id, item, file);
  };
  xhr.onerror = () => showFailed(item, "network error during upload", file, null);
  xhr.send(form);
}

function watch(documentId, item, file) {
  item.li.dataset.id = documentId;
  watched.set(documentId, { item, file });
  poll(documentId);
}

async function poll(documentId) {
  const entry = watched.get(documentId);
  if (!entry || !apiKey) return;
  let doc;
  try {
    doc = await api(`/v1/documents/${encodeURIComponent(documentId)}`);
  } catch (err) {
    showFailed(entry.item, err.message, entry.file, documentId);
    return;
  }
  const { item } = entry;
  item.bar.value = Math.round(doc.progress || 0);
  item.state.textContent = doc.status === "failed" ? "" : `${doc.stage || doc.status} ${Math.round(doc.progress || 0)}%`;
  if (doc.status === "ready") {
    item.state.textContent = "ready";
    item.state.className = "state ready";
    item.bar.value = 100;
    watched.delete(documentId);
    await refreshDocuments();
  } else if (doc.status === "failed") {
    watched.delete(documentId);
    showFailed(item, doc.error || "ingestion failed", entry.file, documentId);
    await refreshDocuments();
  } else {
    setTimeout(() => poll(documentId), POLL_MS);
  }
}

function showFailed(item, message, file, documentId) {
  item.state.className = "state failed";
  item.state.textContent = `failed: ${message}`;
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.append(
    button("Retry", "secondary", async () => {
      item.li.remove();
      if (documentId) await api(`/v1/documents/${encodeURIComponent(documentId)}`, { method: "DELETE" }).catch(() => {});
      uploadOne(file);
    }, `Retry ${file.name}`),
    button("Remove", "danger", async () => {
      item.li.remove();
      if (documentId) await api(`/v1/documents/${encodeURIComponent(documentId)}`, { method: "DELETE" }).catch(() => {});
      await refreshDocuments();
    }, `Remove ${file.name}`),
  );
  item.li.append(actions);
}

// ---------- questions ----------
async function ask(question) {
  $("ask-error").textContent = "";
  $("answer").textContent = "";
  $("citations").replaceChildren();
  $("citation-detail").hidden = true;
  $("refused-note").hidden = true;
  $("feedback-status").textContent = "";
  for (const id of ["thumb-up", "thumb-down"]) $(id).setAttribute("aria-pressed", "false");
  $("answer-box").hidden = false;
  $("ask-button").disabled = true;
  try {
    const response = await api("/v1/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ question, stream: true, ...askFilters() }),
    });
    await readEvents(response, handleEvent);
  } catch (err) {
    $("ask-error").textContent = err.message;
  } finally {
    $("ask-button").disabled = false;
  }
}

// The optional organisation / period inputs, as the query's metadata filters.
function askFilters() {
  const filters = {};
  const organisation = $("ask-organisation").value.trim();
  const period = $("ask-period").value.trim();
  if (organisation) filters.organisation = organisation;
  if (period) filters.period = period;
  return Object.keys(filters).length ? { filters } : {};
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// The answer's first statement (up to its first citation, or its first sentence) stands
// out: it is the figure or the fact asked for; the rest supports it.
function splitLead(text) {
  const cited = text.match(/^([\s\S]*?\[\d+(?:,\s*\d+)*\]\.?)(?:\s+([\s\S]+))?$/);
  if (cited) return [cited[1], cited[2] || ""];
  const sentence = text.match(/^([\s\S]*?[.!?。！？])\s+([\s\S]+)$/);
  return sentence ? [sentence[1], sentence[2]] : [text, ""];
}

function showAnswer(text) {
  const [lead, rest] = splitLead(text);
  const strong = document.createElement("strong");
  strong.className = "answer-lead";
  strong.textContent = lead;
  const parts = [strong];
  // The lead's citation opens the page it cites.
  const marker = lead.match(/\[(\d+)/);
  const cited = marker && currentCitations.find((c) => c.n === Number(marker[1]));
  if (cited) {
    const open = document.createElement("button");
    open.type = "button";
    open.className = "lead-open";
    open.textContent = cited.page_start ? `open p. ${cited.page_start}` : "open the source";
    open.addEventListener("click", () => openDocument(cited.document_id, cited.page_start));
    parts.push(document.createTextNode(" "), open);
  }
  if (rest) parts.push(document.createElement("br"), document.createTextNode(rest));
  $("answer").replaceChildren(...parts);
}

function handleEvent(name, data) {
  if (name === "token") {
    $("answer").textContent += data.text;
  } else if (name === "citations") {
    showCitations(data.citations || []);
    if (typeof data.answer === "string") showAnswer(data.answer);
  } else if (name === "done") {
    lastQueryId = data.query_id || lastQueryId;
    if (typeof data.answer === "string") showAnswer(data.answer);
    if (data.refused) {
      $("refused-note").textContent = "The knowledge base does not contain an answer to this question.";
      $("refused-note").hidden = false;
    }
  } else if (name === "error") {
    $("ask-error").textContent = (data.error && data.error.message) || data.message || "the answer failed";
  }
}

function showCitations(citations) {
  currentCitations = citations;
  const chips = citations.map((c, i) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = `[${c.n}] ${c.filename}${c.page_start ? ` p.${c.page_start}` : ""}`;
    chip.setAttribute("aria-expanded", "false");
    chip.addEventListener("click", () => showCitation(i, chip));
    return chip;
  });
  $("citations").replaceChildren(...chips);
}

function showCitation(index, chip) {
  const c = currentCitations[index];
  for (const other of $("citations").children) other.setAttribute("aria-expanded", "false");
  chip.setAttribute("aria-expanded", "true");
  $("cd-file").textContent = c.filename;
  const pages = (c.page_start ? (c.page_end && c.page_end !== c.page_start ? `pages ${c.page_start}–${c.page_end}` : `page ${c.page_start}`) : "") + (c.printed_pages ? ` (printed ${c.printed_pages})` : "");
  $("cd-page").textContent = pages;
  $("cd-quote").textContent = c.quote || "";
  $("cd-open").onclick = () => openDocument(c.document_id, c.page_start);
  $("citation-detail").hidden = false;
}

async function sendFeedback(rating, buttonId) {
  if (!lastQueryId) return;
  try {
    await api("/v1/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query_id: lastQueryId, rating }),
    });
    for (const id of ["thumb-up", "thumb-down"]) $(id).setAttribute("aria-pressed", String(id === buttonId));
    $("feedback-status").textContent = "Thanks for the feedback.";
  } catch (err) {
    $("feedback-status").textContent = err.message;
  }
}

// ---------- wiring ----------
document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      await signIn($("api-key").value.trim());
    } catch (err) {
      signOut(err.message);
    }
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("question").value.trim();
    if (q) ask(q);
  });
  $("thumb-up").addEventListener("click", () => sendFeedback("up", "thumb-up"));
  $("thumb-down").addEventListener("click", () => sendFeedback("down", "thumb-down"));
  $("file-input").addEventListener("change", (e) => { uploadFiles(e.target.files); e.target.value = ""; });
  $("file-label").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); }
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadFiles(e.dataTransfer.files);
  });
  $("doc-filter").addEventListener("input", () => refreshDocuments().catch(() => {}));
  $("status-filter").addEventListener("change", () => refreshDocuments().catch(() => {}));
  if (apiKey) signIn(apiKey).catch((err) => signOut(err.message));
});

// The rma page: send documents, follow their jobs, show what was found, and watch the network.

import "./style.css";
import { ApiError, job as fetchJob, plainWords, submit, type Job, type Topology } from "./api";
import { LETTER_TYPES, ago, escapeHtml, highlight, seconds } from "./format";
import { TopologyView, followTopology } from "./topology";

interface Entry {
  key: number;
  file: File;
  service: string;
  jobId?: string;
  job?: Job;
  error?: string;
  started: number;
  el: HTMLLIElement;
  originalUrl?: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const entries: Entry[] = [];
let selected: Entry | undefined;
let nextKey = 1;

// ---- sending ---------------------------------------------------------------------------

function send(files: FileList | File[]) {
  const service = $<HTMLSelectElement>("service").value;
  for (const file of Array.from(files)) {
    const el = document.createElement("li");
    el.className = "job";
    el.dataset.testid = "job";
    const e: Entry = { key: nextKey++, file, service, started: Date.now(), el };
    el.addEventListener("click", (ev) => {
      if ((ev.target as HTMLElement).closest("button")) return;
      show(e);
    });
    entries.unshift(e);
    $("jobs").prepend(el);
    start(e);
  }
  $("jobs-empty").hidden = entries.length > 0;
}

async function start(e: Entry) {
  e.error = undefined;
  e.job = undefined;
  e.jobId = undefined;
  e.started = Date.now();
  render(e);
  try {
    e.jobId = await submit(e.service, await readable(e.file));
    poll(e);
  } catch (err) {
    e.error = err instanceof ApiError ? err.message : `Could not send it: ${String(err)}`;
    render(e);
  }
}

/** Whether a file is an HEIC/HEIF photo (iPhones take them), by type or name. */
function isHeic(file: File): boolean {
  return /^image\/hei[cf]/.test(file.type) || /\.(heic|heif)$/i.test(file.name);
}

/**
 * The file as rma can read it. HEIC photos are turned into JPEG here when this browser can
 * open them (Safari can); rma's workers do not read HEIC.
 */
async function readable(file: File): Promise<Blob> {
  if (!isHeic(file)) return file;
  try {
    const bitmap = await createImageBitmap(file);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d")!.drawImage(bitmap, 0, 0);
    const jpeg = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    if (jpeg) return jpeg;
  } catch {
    /* this browser cannot open HEIC: say so below */
  }
  throw new ApiError(
    "unsupported_media_type",
    "This browser can't open HEIC photos. Take the photo again as JPEG (on an iPhone: Settings › Camera › Formats › Most Compatible) or upload it from Safari.",
    415,
  );
}

async function poll(e: Entry) {
  const id = e.jobId;
  if (!id) return;
  let misses = 0;
  for (;;) {
    try {
      e.job = await fetchJob(id);
      misses = 0;
    } catch (err) {
      // The router may be restarting: keep trying for a while before giving up.
      if (++misses > 40) {
        e.error = err instanceof ApiError ? err.message : "Lost contact with the server.";
        render(e);
        return;
      }
    }
    render(e);
    if (e.job?.state === "done") {
      if (!selected || selected.job?.state !== "done" || selected === e) show(e);
      return;
    }
    if (e.job?.state === "failed") {
      e.error = plainWords(codeForStatus(e.job.status), e.job.error ?? "it failed");
      render(e);
      return;
    }
    if (e.jobId !== id) return; // retried meanwhile
    await new Promise((r) => setTimeout(r, 600));
  }
}

function codeForStatus(status: number | null): string | undefined {
  switch (status) {
    case 413: return "payload_too_large";
    case 415: return "unsupported_media_type";
    case 503: return "no_worker";
    case 504: return "timeout";
    case 502: return "upstream_failed";
    default: return undefined;
  }
}

function render(e: Entry) {
  const j = e.job;
  const state = e.error ? "failed" : j?.state ?? "sending";
  const done = j?.progress.done ?? 0;
  const total = Math.max(1, j?.progress.total ?? 1);
  const pct = state === "done" ? 100 : Math.round((100 * done) / total);
  const where = j?.worker ? `on ${j.worker} · via ${j.coordinator}` : j ? `via ${j.coordinator}` : "";
  const elapsed = j?.run_ms != null && state !== "running" ? seconds(j.run_ms) : seconds(Date.now() - e.started);
  e.el.dataset.state = state;
  e.el.classList.toggle("selected", selected === e);
  e.el.innerHTML = `
    <div class="job-head">
      <span class="name">${escapeHtml(e.file.name)}</span>
      <span class="state ${state}">${state}</span>
    </div>
    <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="${total}" aria-valuenow="${done}"><span style="width:${pct}%"></span></div>
    <div class="job-meta muted">${escapeHtml(e.service)} · ${state === "running" || state === "queued" ? `${done}/${total}` : ""} ${escapeHtml(where)} · ${elapsed}</div>
    ${e.error ? `<div class="error" data-testid="job-error">${escapeHtml(e.error)} <button class="button small" data-retry>Try again</button></div>` : ""}`;
  e.el.querySelector("[data-retry]")?.addEventListener("click", () => start(e));
}

// ---- results ---------------------------------------------------------------------------

function download(name: string, type: string, content: string) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([content], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function copy(text: string, button: HTMLButtonElement) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = document.createElement("textarea");
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  const was = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = was), 1200);
}

function list(items: any[] | undefined, field: string): string {
  if (!items?.length) return `<span class="muted">none found</span>`;
  return items.map((x) => `<span class="chip">${escapeHtml(String(x[field] ?? x))}</span>`).join(" ");
}

function show(e: Entry) {
  const prev = selected;
  selected = e;
  if (prev && prev !== e) render(prev);
  render(e);
  const panel = $("result");
  const j = e.job;
  if (!j || j.state !== "done") return;
  panel.hidden = false;
  const r = j.result ?? {};
  const facts = r.facts ?? (r.letter_type ? r : undefined);
  const text: string = r.text ?? "";
  const base = e.file.name.replace(/\.[^.]+$/, "") || "document";
  e.originalUrl ??= e.file.type.startsWith("image/") ? URL.createObjectURL(e.file) : undefined;
  const enhancedHash = r.stored?.enhanced?.hash;
  const enhancedUrl = enhancedHash ? `/api/service/store/${enhancedHash}` : j.service === "enhance" ? j.result_url : undefined;

  const marks = facts
    ? [
        ...(facts.amounts ?? []).map((a: any) => ({ text: a.text, kind: "amount" })),
        ...(facts.dates ?? []).map((d: any) => ({ text: d.text, kind: "date" })),
        ...(facts.references ?? []).map((x: any) => ({ text: x.value, kind: "ref" })),
        ...(facts.sort_codes ?? []).map((x: string) => ({ text: x, kind: "ref" })),
        ...(facts.letter_type_evidence ?? []).map((x: string) => ({ text: x, kind: "evidence" })),
        ...(facts.sender?.name ? [{ text: facts.sender.name, kind: "sender" }] : []),
      ]
    : [];
  const pages: any[] = Array.isArray(r.pages) ? r.pages : [];
  panel.innerHTML = `
    <div class="result-head">
      <h2>${escapeHtml(e.file.name)}</h2>
      <div class="buttons">
        ${text ? `<button class="button small" data-act="txt">Download text</button>` : ""}
        <button class="button small" data-act="json">Download JSON</button>
        ${text ? `<button class="button small" data-act="copy">Copy text</button>` : ""}
      </div>
    </div>
    ${facts ? `
    <div class="facts" data-testid="facts">
      <div class="fact big"><span class="label">Letter type</span><span data-testid="letter-type">${escapeHtml(LETTER_TYPES[facts.letter_type] ?? facts.letter_type)}</span>
        ${facts.letter_type_evidence?.length ? `<span class="muted small">because it says: ${facts.letter_type_evidence.map((x: string) => `“${escapeHtml(x)}”`).join(", ")}</span>` : ""}</div>
      <div class="fact"><span class="label">From</span>${facts.sender ? escapeHtml(facts.sender.name) : `<span class="muted">not found</span>`}
        ${facts.original_creditor ? `<span class="muted small">original creditor: ${escapeHtml(facts.original_creditor)}</span>` : ""}</div>
      <div class="fact"><span class="label">Amounts</span><span data-testid="amounts">${list(facts.amounts, "text")}</span></div>
      <div class="fact"><span class="label">Dates</span>${list(facts.dates, "date")}</div>
      <div class="fact"><span class="label">References</span>${list(facts.references, "value")}${facts.sort_codes?.length ? ` · sort code ${list(facts.sort_codes, "")}` : ""}</div>
    </div>` : ""}
    ${e.originalUrl || enhancedUrl ? `
    <div class="images">
      ${e.originalUrl ? `<figure><img src="${e.originalUrl}" alt="the original"><figcaption>original</figcaption></figure>` : ""}
      ${enhancedUrl ? `<figure><img src="${enhancedUrl}" alt="the cleaned-up image rma read"><figcaption>cleaned up for reading</figcaption></figure>` : ""}
    </div>` : ""}
    ${text ? `<h3>Text</h3>
    ${pages.length > 1
      ? pages.map((p) => `<details open><summary>Page ${p.page}${p.source === "ocr" ? " (read from the scan)" : ""}</summary><pre class="text">${highlight(p.text ?? "", marks)}</pre></details>`).join("")
      : `<pre class="text" data-testid="text">${highlight(text, marks)}</pre>`}` : ""}
    ${j.steps?.length ? `<h3>Where it ran</h3><ol class="steps">${j.steps.map((s) => `<li>${escapeHtml(s.step)} on <b>${escapeHtml(s.worker)}</b> via ${escapeHtml(s.coordinator)} · ${s.ms} ms${s.cache === "hit" ? " · from cache" : ""}</li>`).join("")}</ol>` : ""}`;
  panel.querySelector<HTMLButtonElement>("[data-act=txt]")?.addEventListener("click", () => download(`${base}.txt`, "text/plain", text));
  panel.querySelector<HTMLButtonElement>("[data-act=json]")?.addEventListener("click", () => download(`${base}.json`, "application/json", JSON.stringify(j, null, 2)));
  const copyBtn = panel.querySelector<HTMLButtonElement>("[data-act=copy]");
  copyBtn?.addEventListener("click", () => copy(text, copyBtn));
}

// ---- network ---------------------------------------------------------------------------

function renderHealth(t: Topology) {
  const fresh = t.coordinators.filter((c) => c.status !== "stale").length;
  const active = t.workers.filter((w) => w.status === "active").length;
  const stale = t.workers.length - active;
  const ok = fresh > 0 && active > 0;
  const h = $("health");
  h.className = `health ${ok ? "ok" : "bad"}`;
  h.textContent = `${ok ? "● ready" : "● not ready"} · ${fresh} coordinator${fresh === 1 ? "" : "s"} · ${active} worker${active === 1 ? "" : "s"} active${stale ? ` · ${stale} stale` : ""}`;
}

function renderTables(t: Topology) {
  $("coordinators").querySelector("tbody")!.innerHTML = t.coordinators
    .map((c) => `<tr class="${c.status}"><td>${escapeHtml(c.id)}</td><td>${c.status}</td><td>${c.workers}</td><td>${(c.load * 100).toFixed(0)} %</td><td>${c.requests_last_minute}</td><td>${ago(c.last_seen)}</td></tr>`)
    .join("");
  $("workers").querySelector("tbody")!.innerHTML = t.workers
    .map((w) => `<tr class="${w.status}"><td>${escapeHtml(w.id)}</td><td>${w.type}</td><td>${w.status}</td><td>${escapeHtml(w.coordinator)}</td><td>${escapeHtml(w.services.join(", "))}</td><td>${(w.load * 100).toFixed(0)} %</td><td>${w.requests_last_minute}</td></tr>`)
    .join("");
}

// ---- wiring ----------------------------------------------------------------------------

const drop = $("drop");
for (const id of ["files", "camera"]) {
  const input = $<HTMLInputElement>(id);
  input.addEventListener("change", () => {
    if (input.files?.length) send(input.files);
    input.value = "";
  });
}
drop.addEventListener("dragover", (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  if (ev.dataTransfer?.files.length) send(ev.dataTransfer.files);
});

const view = new TopologyView($("graph"), $("tooltip"));
let lastTopology: Topology | undefined;
followTopology(
  (t) => {
    lastTopology = t;
    view.update(t);
    renderHealth(t);
    renderTables(t);
  },
  (live) => {
    $("live").textContent = live ? "live" : "reconnecting…";
    if (!live) $("health").textContent = "connecting…";
  },
);
// "last heartbeat" figures age between pushes.
setInterval(() => lastTopology && renderTables(lastTopology), 5000);
// Running jobs' elapsed time.
setInterval(() => entries.filter((e) => e.job?.state === "running" || e.job?.state === "queued").forEach(render), 1000);

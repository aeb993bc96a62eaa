// The job list: send documents as jobs, follow each job, show its state and progress.

import { ApiError, job as fetchJob, plainWords, submit, type JobView } from "./api";
import { escapeHtml, seconds } from "./format";
import { readable } from "./photo";

/** One document sent from this page, and its job. */
export interface Entry {
  key: number;
  file: File;
  service: string;
  jobId?: string;
  job?: JobView;
  error?: string;
  started: number;
  el: HTMLLIElement;
  originalUrl?: string;
}

export const entries: Entry[] = [];
let nextKey = 1;

/** What the rest of the page does with jobs: show one (set by main.ts). */
export const hooks: { show: (e: Entry) => void; selected: () => Entry | undefined } = {
  show: () => {},
  selected: () => undefined,
};

/** Sends each file as a job of `service`, newest first in `list`. */
export function send(files: FileList | File[], service: string, list: HTMLElement) {
  for (const file of Array.from(files)) {
    const el = document.createElement("li");
    el.className = "job";
    el.dataset.testid = "job";
    const e: Entry = { key: nextKey++, file, service, started: Date.now(), el };
    el.addEventListener("click", (ev) => {
      if ((ev.target as HTMLElement).closest("button")) return;
      hooks.show(e);
    });
    entries.unshift(e);
    list.prepend(el);
    start(e);
  }
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
      const selected = hooks.selected();
      if (!selected || selected.job?.state !== "done" || selected === e) hooks.show(e);
      return;
    }
    if (e.job?.state === "failed") {
      // The coordinator stores the failure's code; the page turns it into plain words.
      e.error = plainWords(e.job.error_code, e.job.error ?? "it failed");
      render(e);
      return;
    }
    if (e.jobId !== id) return; // retried meanwhile
    await new Promise((r) => setTimeout(r, 600));
  }
}

/** Draws one entry of the job list. */
export function render(e: Entry) {
  const j = e.job;
  const state = e.error ? "failed" : j?.state ?? "sending";
  const done = j?.progress.done ?? 0;
  const total = Math.max(1, j?.progress.total ?? 1);
  const pct = state === "done" ? 100 : Math.round((100 * done) / total);
  const where = j?.worker ? `on ${j.worker} · via ${j.coordinator}` : j ? `via ${j.coordinator}` : "";
  const elapsed = j?.run_ms != null && state !== "running" ? seconds(j.run_ms) : seconds(Date.now() - e.started);
  e.el.dataset.state = state;
  e.el.classList.toggle("selected", hooks.selected() === e);
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

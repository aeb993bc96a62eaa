// The result panel: what was found in a document, its text with the facts highlighted, the
// images, and where each step ran.

import { ApiError, correct } from "./api";
import type { Correction, ExtractResult, Facts, JobView, Page, ProcessResult, ServiceResult } from "./api";
import { LETTER_TYPES, escapeHtml, highlight } from "./format";
import { hooks, render, type Entry } from "./jobs";

let selected: Entry | undefined;

/** The entry shown now. */
export function current(): Entry | undefined {
  return selected;
}

function isProcess(r: ServiceResult): r is ProcessResult {
  return "steps" in r && "facts" in r;
}

function isExtract(r: ServiceResult): r is ExtractResult {
  return "letter_type" in r && "text_source" in r;
}

function hasPages(r: ServiceResult): r is ServiceResult & { text: string; pages: Page[] } {
  return "pages" in r && Array.isArray(r.pages) && "text" in r && typeof r.text === "string";
}

function factsOf(r: ServiceResult): Facts | undefined {
  if (isProcess(r)) return r.facts;
  if (isExtract(r)) return r;
  return undefined;
}

function textOf(r: ServiceResult): string {
  if (hasPages(r)) return r.text;
  if (isExtract(r)) return r.text ?? "";
  return "";
}

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

/** A fact as a chip: one OCR may have misread is marked, with why on hover. */
interface Chip {
  text: string;
  uncertain?: boolean;
  reason?: string;
  /** What the fact is (`arrears`, `deadline`…), and the words that said so. */
  role?: string;
  evidence?: string;
  /** Which fact it is, so a person can correct it. */
  field?: string;
  index?: number;
  /** A person's correction of it, the latest. */
  corrected?: Correction;
}

/** The latest correction of each fact: `field/index` → correction. */
function latestCorrections(j: JobView): Map<string, Correction> {
  const m = new Map<string, Correction>();
  for (const c of j.corrections ?? []) m.set(`${c.field}/${c.index ?? ""}`, c);
  return m;
}

function editButton(c: Chip): string {
  return c.field ? `<button class="edit" data-act="correct" data-field="${c.field}" data-index="${c.index ?? ""}" title="correct this" aria-label="correct ${escapeHtml(c.text)}">✎</button>` : "";
}

function roleLabel(c: Chip): string {
  return c.role ? ` <span class="role" title="${escapeHtml(c.evidence ? `because it says “${c.evidence}”` : "")}">${escapeHtml(c.role.replace(/_/g, " "))}</span>` : "";
}

function chips(values: (string | Chip)[]): string {
  if (!values.length) return `<span class="muted">none found</span>`;
  return values
    .map((v) => (typeof v === "string" ? { text: v } : v))
    .map((c) =>
      c.corrected
        ? `<span class="chip corrected" data-testid="corrected-fact" title="corrected by a person; read as ${escapeHtml(c.corrected.was)}">${escapeHtml(c.corrected.value)} ✓</span>${roleLabel(c)}${editButton(c)}`
        : c.uncertain
          ? `<span class="chip uncertain" data-testid="uncertain-fact" title="${escapeHtml(c.reason ?? "check it against the letter")}">${escapeHtml(c.text)}?</span>${roleLabel(c)}${editButton(c)}`
          : `<span class="chip">${escapeHtml(c.text)}</span>${roleLabel(c)}${editButton(c)}`,
    )
    .join(" ");
}

/** A fact OCR may have misread: what was read, why it is unsure, and the line it came from. */
interface Unsure {
  shown: string;
  reason?: string;
  line: string;
}

function unsureList(items: Unsure[]): string {
  if (!items.length) return "";
  return `<div class="unsure" data-testid="uncertain">
    <b>Check these against the letter</b> — the scan may have been misread:
    <ul>${items
      .map((u) => `<li><span class="chip uncertain">${escapeHtml(u.shown)}?</span> ${escapeHtml(u.reason ?? "")} <span class="muted small">from the line “${escapeHtml(u.line)}”</span></li>`)
      .join("")}</ul></div>`;
}

/** An amount as the adviser reads it: as printed when sure, else the value it was read as. */
function shownAmount(a: { text: string; value: string; uncertain: boolean }): string {
  return a.uncertain ? `£${a.value}` : a.text;
}

/** Shows a finished job's result in `panel`. */
export function show(e: Entry, panel: HTMLElement) {
  const prev = selected;
  selected = e;
  if (prev && prev !== e) render(prev);
  render(e);
  const j = e.job;
  if (!j || j.state !== "done") return;
  panel.hidden = false;
  const r: ServiceResult = j.result ?? {};
  const facts = factsOf(r);
  const text = textOf(r);
  const base = e.file.name.replace(/\.[^.]+$/, "") || "document";
  e.originalUrl ??= e.file.type.startsWith("image/") ? URL.createObjectURL(e.file) : undefined;
  const enhancedHash = isProcess(r) ? r.stored.enhanced?.hash : undefined;
  const enhancedUrl = enhancedHash ? `/api/service/store/${enhancedHash}` : j.service === "enhance" ? j.result_url : undefined;

  const marks = facts
    ? [
        ...facts.amounts.map((a) => ({ text: a.text, kind: "amount" })),
        ...facts.dates.map((d) => ({ text: d.text, kind: "date" })),
        ...facts.references.map((x) => ({ text: x.value, kind: "ref" })),
        ...facts.sort_codes.map((x) => ({ text: x, kind: "ref" })),
        ...facts.letter_type_evidence.map((x) => ({ text: x, kind: "evidence" })),
        ...(facts.sender?.name ? [{ text: facts.sender.name, kind: "sender" }] : []),
      ]
    : [];
  const pages: Page[] = hasPages(r) ? r.pages : [];
  const fixes = latestCorrections(j);
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
      ${facts.warning ? `<p class="warn" data-testid="no-text">${escapeHtml(facts.warning)}</p>` : ""}
      <div class="fact big"><span class="label">Letter type</span><span data-testid="letter-type">${escapeHtml(LETTER_TYPES[facts.letter_type] ?? facts.letter_type)}</span>
        ${facts.letter_type_evidence.length ? `<span class="muted small">because it says: ${facts.letter_type_evidence.map((x) => `“${escapeHtml(x)}”`).join(", ")}</span>` : ""}</div>
      <div class="fact"><span class="label">From</span>${facts.sender ? escapeHtml(facts.sender.name) : `<span class="muted">not found</span>`}
        ${facts.original_creditor ? `<span class="muted small">original creditor: ${escapeHtml(facts.original_creditor)}</span>` : ""}</div>
      <div class="fact"><span class="label">Amounts</span><span data-testid="amounts">${chips(facts.amounts.map((a, i) => ({ text: shownAmount(a), uncertain: a.uncertain, reason: a.reason, role: a.role, evidence: a.role_evidence, field: "amounts", index: i, corrected: fixes.get(`amounts/${i}`) })))}</span></div>
      <div class="fact"><span class="label">Dates</span>${chips(facts.dates.map((d, i) => ({ text: d.date, uncertain: d.uncertain, reason: d.reason, role: d.role, evidence: d.role_evidence, field: "dates", index: i, corrected: fixes.get(`dates/${i}`) })))}</div>
      <div class="fact"><span class="label">References</span>${chips(facts.references.map((x, i) => ({ text: x.value, uncertain: x.uncertain, reason: x.reason, field: "references", index: i, corrected: fixes.get(`references/${i}`) })))}${facts.sort_codes.length ? ` · sort code ${chips(facts.sort_codes)}` : ""}</div>
      ${unsureList([
        ...facts.amounts.filter((a) => a.uncertain).map((a) => ({ shown: shownAmount(a), reason: a.reason, line: a.line })),
        ...facts.dates.filter((d) => d.uncertain).map((d) => ({ shown: d.date, reason: d.reason, line: d.line })),
        ...facts.references.filter((x) => x.uncertain).map((x) => ({ shown: x.value, reason: x.reason, line: x.line })),
      ])}
    </div>` : ""}
    ${e.originalUrl || enhancedUrl ? `
    <div class="images">
      ${e.originalUrl ? `<figure><img src="${e.originalUrl}" alt="the original"><figcaption>original</figcaption></figure>` : ""}
      ${enhancedUrl ? `<figure><img src="${enhancedUrl}" alt="the cleaned-up image rma read"><figcaption>cleaned up for reading</figcaption></figure>` : ""}
    </div>` : ""}
    ${text ? `<h3>Text</h3>
    ${pages.length > 1
      ? pages.map((p) => `<details open><summary>Page ${p.page}${p.source === "ocr" ? " (read from the scan)" : ""}</summary><pre class="text">${highlight(p.text, marks)}</pre></details>`).join("")
      : `<pre class="text" data-testid="text">${highlight(text, marks)}</pre>`}` : ""}
    ${j.steps?.length ? `<h3>Where it ran</h3><ol class="steps">${j.steps.map((s) => `<li>${escapeHtml(s.step)} on <b>${escapeHtml(s.worker)}</b> via ${escapeHtml(s.coordinator)} · ${s.ms} ms${s.cache === "hit" ? " · from cache" : ""}${s.verified ? ` · checked on a second worker: ${s.verified}` : ""}</li>`).join("")}</ol>` : ""}${j.verified === "disagreed" ? `<p class="warn" data-testid="disagreed">Two volunteers' machines gave different answers for this document; the answer most of them agreed on is shown. Check the facts against the letter.</p>` : ""}`;
  panel.querySelector<HTMLButtonElement>("[data-act=txt]")?.addEventListener("click", () => download(`${base}.txt`, "text/plain", text));
  panel.querySelector<HTMLButtonElement>("[data-act=json]")?.addEventListener("click", () => download(`${base}.json`, "application/json", JSON.stringify(j, null, 2)));
  const copyBtn = panel.querySelector<HTMLButtonElement>("[data-act=copy]");
  copyBtn?.addEventListener("click", () => copy(text, copyBtn));
  // A person corrects a fact: kept with the job (and in its JSON download) as theirs.
  for (const b of panel.querySelectorAll<HTMLButtonElement>("[data-act=correct]")) {
    b.addEventListener("click", async () => {
      const field = b.dataset.field ?? "";
      const index = Number(b.dataset.index);
      const hint = field === "amounts" ? "pounds and pence, as 1482.37" : field === "dates" ? "as YYYY-MM-DD" : "as printed";
      const value = window.prompt(`The right value (${hint}):`);
      if (value === null || value.trim() === "") return;
      try {
        e.job = await correct(j.id, { field, index, value: value.trim() });
        show(e, panel);
      } catch (err) {
        window.alert(err instanceof ApiError ? err.message : String(err));
      }
    });
  }
}

hooks.selected = current;

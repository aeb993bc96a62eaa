// Small formatting helpers.

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "unknown";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

export const LETTER_TYPES: Record<string, string> = {
  council_tax: "Council tax",
  universal_credit: "Universal Credit / DWP",
  hmrc: "HMRC (tax credits, tax)",
  bank_statement: "Bank statement",
  credit_arrears: "Bank, card or loan arrears",
  bnpl: "Buy now pay later",
  default_notice: "Default notice (Consumer Credit Act)",
  debt_collection: "Debt collection",
  county_court: "County court / CCJ",
  enforcement_agent: "Enforcement agent (bailiff)",
  utility: "Energy bill",
  water: "Water bill",
  rent_arrears: "Rent arrears / possession",
  parking_charge: "Parking charge",
  other: "Other letter",
};

/**
 * The text as HTML with every piece of evidence marked. Marks never overlap: the longest
 * match wins where two would.
 */
export function highlight(text: string, marks: { text: string; kind: string }[]): string {
  const spans: { start: number; end: number; kind: string }[] = [];
  const lower = text.toLowerCase();
  for (const m of marks) {
    const needle = m.text.trim();
    if (needle.length < 2) continue;
    let from = 0;
    const n = needle.toLowerCase();
    for (;;) {
      const at = lower.indexOf(n, from);
      if (at < 0) break;
      spans.push({ start: at, end: at + n.length, kind: m.kind });
      from = at + n.length;
    }
  }
  spans.sort((a, b) => a.start - b.start || b.end - b.start - (a.end - a.start));
  let out = "";
  let pos = 0;
  for (const s of spans) {
    if (s.start < pos) continue;
    out += escapeHtml(text.slice(pos, s.start));
    out += `<mark class="${s.kind}">${escapeHtml(text.slice(s.start, s.end))}</mark>`;
    pos = s.end;
  }
  return out + escapeHtml(text.slice(pos));
}

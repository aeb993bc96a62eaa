// The network panel: health line, tables of coordinators and workers, and the live graph.

import type { Topology, Usage } from "./api";
import { ago, escapeHtml } from "./format";
import { TopologyView, adminToken, followTopology } from "./topology";

const $ = (id: string) => document.getElementById(id)!;

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
    .map((c) => `<tr class="${c.status}"><td>${escapeHtml(c.id)}</td><td>${c.status}</td><td>${c.workers}</td><td>${(c.load * 100).toFixed(0)} %</td><td>${c.requests_last_minute}</td><td>${ago(c.last_seen)}</td><td class="address">${c.url ? escapeHtml(c.url) : "—"}</td></tr>`)
    .join("");
  $("workers").querySelector("tbody")!.innerHTML = t.workers
    .map((w) => `<tr class="${w.status}"><td>${escapeHtml(w.id)}</td><td>${w.type}</td><td>${w.status}</td><td>${escapeHtml(w.coordinator)}</td><td>${escapeHtml(w.services.join(", "))}</td><td>${(w.load * 100).toFixed(0)} %</td><td>${w.requests_last_minute}</td></tr>`)
    .join("");
}

/** The admin's gauge of today's usage against the edge's free tier; hidden for everyone else. */
async function refreshUsage() {
  const el = $("usage");
  const token = adminToken();
  if (!token) {
    el.hidden = true;
    return;
  }
  try {
    const r = await fetch("/api/admin/usage", { headers: { authorization: `Bearer ${token}` } });
    if (!r.ok) throw new Error(String(r.status));
    const u = (await r.json()) as Usage;
    const names: Record<string, string> = {
      requests: "Requests",
      registry_requests: "Registry calls",
      rows_written: "Rows written",
    };
    el.innerHTML =
      `<span class="muted">Today (UTC ${escapeHtml(u.day)}), projected against the edge's free tier:</span>` +
      u.counters
        .map((c) => {
          const pct = Math.min(100, (100 * c.projected) / c.free_tier_limit);
          return `<label title="${c.used} so far, ${c.projected} projected of ${c.free_tier_limit} a day">${names[c.name] ?? escapeHtml(c.name)} <meter min="0" max="100" low="60" high="80" optimum="0" value="${pct.toFixed(1)}"></meter> ${pct.toFixed(0)} %</label>`;
        })
        .join("") +
      (u.warning ? `<p class="warn">Past 80 % of the free tier: ${escapeHtml(u.warning)}</p>` : "");
    el.hidden = false;
  } catch {
    el.hidden = true;
  }
}

/** Follows the topology feed and keeps the graph, health line and tables current. */
export function followNetwork() {
  const view = new TopologyView($("graph"), $("tooltip"));
  let last: Topology | undefined;
  const state = $("admin-state");
  const showAdmin = (on: boolean, why = "") => {
    state.textContent = on ? "admin view: addresses shown" : why || "public view: addresses hidden";
    $("admin-sign-out").hidden = !on;
    ($("admin-form") as HTMLFormElement).hidden = on;
  };
  const signIn = followTopology(
    (t) => {
      last = t;
      view.update(t);
      renderHealth(t);
      renderTables(t);
    },
    (live) => {
      $("live").textContent = live ? "live" : "reconnecting…";
      if (!live) $("health").textContent = "connecting…";
    },
    (message) => showAdmin(false, message),
  );
  showAdmin(adminToken() !== null);
  $("admin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("admin-token") as HTMLInputElement;
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    showAdmin(true);
    signIn(token);
    void refreshUsage();
  });
  $("admin-sign-out").addEventListener("click", () => {
    signIn(null);
    showAdmin(false);
    void refreshUsage();
  });
  void refreshUsage();
  setInterval(() => void refreshUsage(), 30_000);
  // "last heartbeat" figures age between pushes.
  setInterval(() => last && renderTables(last), 5000);
}

// The network panel: health line, tables of coordinators and workers, and the live graph.

import type { Topology } from "./api";
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
  });
  $("admin-sign-out").addEventListener("click", () => {
    signIn(null);
    showAdmin(false);
  });
  // "last heartbeat" figures age between pushes.
  setInterval(() => last && renderTables(last), 5000);
}

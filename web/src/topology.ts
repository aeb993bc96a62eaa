// The live network graph: router, coordinators and workers as a D3 force-directed graph,
// updated from the router's WebSocket (`/api/topology/ws`), which pushes every change.

import { drag } from "d3-drag";
import { forceCenter, forceCollide, forceLink, forceManyBody, forceSimulation, type Simulation, type SimulationLinkDatum, type SimulationNodeDatum } from "d3-force";
import { select } from "d3-selection";
import type { Topology } from "./api";
import { ago, escapeHtml } from "./format";

interface Node extends SimulationNodeDatum {
  id: string;
  kind: "router" | "coordinator" | "gpu" | "cpu" | "storage" | "edge";
  stale: boolean;
  load: number;
  tip: string;
}

interface Link extends SimulationLinkDatum<Node> {
  id: string;
  traffic: number;
  stale: boolean;
}

const RADIUS: Record<Node["kind"], number> = { router: 20, coordinator: 16, gpu: 13, cpu: 13, storage: 13, edge: 13 };

export class TopologyView {
  private svg;
  private linkLayer;
  private nodeLayer;
  private sim: Simulation<Node, Link>;
  private nodes = new Map<string, Node>();
  private width = 640;
  private height = 360;

  constructor(private host: HTMLElement, private tooltip: HTMLElement) {
    this.svg = select(host).append("svg").attr("role", "img").attr("aria-label", "network of router, coordinators and workers");
    this.linkLayer = this.svg.append("g").attr("class", "links");
    this.nodeLayer = this.svg.append("g").attr("class", "nodes");
    this.sim = forceSimulation<Node, Link>()
      .force("charge", forceManyBody().strength(-260))
      .force("link", forceLink<Node, Link>().id((d) => d.id).distance((l) => ((l.source as Node).kind === "router" ? 110 : 70)))
      .force("collide", forceCollide<Node>((d) => RADIUS[d.kind] + 8))
      .on("tick", () => this.tick());
    this.resize();
    new ResizeObserver(() => this.resize()).observe(host);
  }

  private resize() {
    this.width = Math.max(280, this.host.clientWidth);
    this.height = this.width < 500 ? 300 : 380;
    this.svg.attr("viewBox", `0 0 ${this.width} ${this.height}`).attr("width", this.width).attr("height", this.height);
    this.sim.force("center", forceCenter(this.width / 2, this.height / 2));
    this.sim.alpha(0.3).restart();
  }

  update(t: Topology) {
    const next = new Map<string, Node>();
    const keep = (n: Omit<Node, keyof SimulationNodeDatum>) => {
      const old = this.nodes.get(n.id);
      next.set(n.id, Object.assign(old ?? { x: this.width / 2 + Math.random() * 40 - 20, y: this.height / 2 + Math.random() * 40 - 20 }, n));
    };
    const healthy = t.coordinators.filter((c) => c.status !== "stale").length;
    keep({ id: "router", kind: "router", stale: false, load: 0, tip: `<b>router</b><br>${healthy} of ${t.coordinators.length} coordinators fresh` });
    const links: Link[] = [];
    for (const c of t.coordinators) {
      const id = `c:${c.id}`;
      keep({
        id, kind: "coordinator", stale: c.status !== "healthy", load: c.load,
        tip: `<b>${escapeHtml(c.id)}</b> · coordinator<br>status: ${c.status}<br>workers: ${c.workers} · load ${(c.load * 100).toFixed(0)} %<br>${c.requests_last_minute} requests in the last minute<br>last heartbeat: ${ago(c.last_seen)}<br>${escapeHtml(c.url)}`,
      });
      links.push({ id: `router->${id}`, source: "router", target: id, traffic: c.requests_last_minute, stale: c.status === "stale" });
    }
    for (const w of t.workers) {
      const id = `w:${w.id}`;
      keep({
        id, kind: w.type, stale: w.status !== "active", load: w.load,
        tip: `<b>${escapeHtml(w.id)}</b> · ${w.type} worker<br>status: ${w.status}<br>services: ${escapeHtml(w.services.join(", "))}<br>load ${(w.load * 100).toFixed(0)} % · ${w.active_requests} in flight · ${w.requests_last_minute} req/min<br>last heartbeat: ${ago(w.last_seen)}`,
      });
      const cid = `c:${w.coordinator}`;
      if (next.has(cid)) links.push({ id: `${cid}->${id}`, source: cid, target: id, traffic: w.requests_last_minute, stale: w.status !== "active" });
    }
    const structural = next.size !== this.nodes.size || [...next.keys()].some((k) => !this.nodes.has(k));
    this.nodes = next;
    const nodes = [...next.values()];

    this.linkLayer
      .selectAll<SVGLineElement, Link>("line")
      .data(links, (d) => d.id)
      .join("line")
      .attr("class", (d) => (d.stale ? "link stale" : "link"))
      .attr("stroke-width", (d) => 1.5 + Math.log2(1 + d.traffic));

    const tip = this.tooltip;
    const g = this.nodeLayer
      .selectAll<SVGGElement, Node>("g.node")
      .data(nodes, (d) => d.id)
      .join((enter) => {
        const e = enter.append("g").attr("tabindex", 0);
        e.append("circle").attr("class", "ring");
        e.append("circle").attr("class", "body");
        e.append("text").attr("dy", (d) => RADIUS[d.kind] + 13).attr("text-anchor", "middle");
        e.on("pointerenter focus", function (ev: PointerEvent | FocusEvent, d) {
          tip.innerHTML = d.tip;
          tip.hidden = false;
          const box = (this as SVGGElement).getBoundingClientRect();
          tip.style.left = `${box.left + window.scrollX + box.width / 2}px`;
          tip.style.top = `${box.top + window.scrollY - 8}px`;
          void ev;
        }).on("pointerleave blur", () => {
          tip.hidden = true;
        });
        e.call(
          drag<SVGGElement, Node>()
            .on("start", (ev, d) => { if (!ev.active) this.sim.alphaTarget(0.2).restart(); d.fx = d.x; d.fy = d.y; })
            .on("drag", (ev, d) => { d.fx = ev.x; d.fy = ev.y; })
            .on("end", (ev, d) => { if (!ev.active) this.sim.alphaTarget(0); d.fx = null; d.fy = null; }),
        );
        return e;
      })
      .attr("class", (d) => `node ${d.kind}${d.stale ? " stale" : ""}`)
      .attr("data-id", (d) => d.id);
    g.select<SVGCircleElement>("circle.body").attr("r", (d) => RADIUS[d.kind]);
    // The ring's thickness shows load.
    g.select<SVGCircleElement>("circle.ring")
      .attr("r", (d) => RADIUS[d.kind] + 2 + Math.min(1, d.load) * 3)
      .attr("stroke-width", (d) => 1 + Math.min(1, d.load) * 5);
    g.select<SVGTextElement>("text").text((d) => (d.id === "router" ? "router" : d.id.slice(2)));

    this.sim.nodes(nodes);
    this.sim.force<ReturnType<typeof forceLink<Node, Link>>>("link")!.links(links);
    if (structural) this.sim.alpha(0.8).restart();
  }

  private tick() {
    const r = (d: Node) => RADIUS[d.kind] + 4;
    const clampX = (d: Node) => Math.max(r(d), Math.min(this.width - r(d), d.x ?? 0));
    const clampY = (d: Node) => Math.max(r(d), Math.min(this.height - r(d) - 14, d.y ?? 0));
    for (const d of this.nodes.values()) {
      d.x = clampX(d);
      d.y = clampY(d);
    }
    this.linkLayer
      .selectAll<SVGLineElement, Link>("line")
      .attr("x1", (d) => (d.source as Node).x ?? 0)
      .attr("y1", (d) => (d.source as Node).y ?? 0)
      .attr("x2", (d) => (d.target as Node).x ?? 0)
      .attr("y2", (d) => (d.target as Node).y ?? 0);
    this.nodeLayer.selectAll<SVGGElement, Node>("g.node").attr("transform", (d) => `translate(${d.x},${d.y})`);
  }
}

/** Where the page keeps an admin token for this tab only. */
const ADMIN_KEY = "rma-admin-token";

/** The admin token this tab signed in with, if any. */
export function adminToken(): string | null {
  return sessionStorage.getItem(ADMIN_KEY);
}

/**
 * Keeps a WebSocket to the topology feed open, reconnecting with backoff. The feed is the
 * public, redacted view (no addresses) until the page signs in with the admin token, which
 * it sends as the first message (browsers cannot set headers on a WebSocket). Returns a
 * function that signs in (or out, with `null`).
 */
export function followTopology(
  onTopology: (t: Topology) => void,
  onState: (live: boolean) => void,
  onRefused: (message: string) => void = () => {},
): (token: string | null) => void {
  let delay = 500;
  let current: WebSocket | undefined;
  const signIn = (ws: WebSocket) => {
    const token = adminToken();
    if (token && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ admin_token: token }));
  };
  const connect = () => {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/api/topology/ws`);
    current = ws;
    ws.onopen = () => {
      delay = 500;
      onState(true);
      signIn(ws);
    };
    ws.onmessage = (ev) => {
      try {
        const msg = JSON.parse(ev.data as string) as Topology | { error: string; message: string };
        if ("error" in msg) {
          sessionStorage.removeItem(ADMIN_KEY);
          onRefused(msg.message);
        } else {
          onTopology(msg);
        }
      } catch {
        /* a malformed frame is skipped; the next one replaces it */
      }
    };
    ws.onclose = () => {
      onState(false);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  };
  connect();
  return (token) => {
    if (token) {
      sessionStorage.setItem(ADMIN_KEY, token);
      if (current) signIn(current);
    } else {
      sessionStorage.removeItem(ADMIN_KEY);
      // A new connection starts from the public view.
      current?.close();
    }
  };
}

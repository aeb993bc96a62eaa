// Runs the liveness simulation (sim/worker.ts) in local workerd and prints its figures.
//   node sim/run.mjs [--workers 1000] [--coordinators 20] [--check] [--json]
// --check exits 1 unless the goals hold: ≤ 10,000 Worker requests and ≤ 1,000 rows written a
// day for liveness and membership, leaving ≥ 90 % of each free-tier limit for documents.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, d) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : d;
};
const params = new URLSearchParams({
  workers: opt("workers", "1000"),
  coordinators: opt("coordinators", "20"),
  restart_share: opt("restart-share", "0.1"),
  heartbeat_interval_s: opt("heartbeat-interval", "120"),
  heartbeat_budget: opt("heartbeat-budget", "5000"),
  seed: opt("seed", "1"),
});

const port = await new Promise((res) => {
  const s = createServer().listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => res(p));
  });
});
const state = mkdtempSync(join(tmpdir(), "rma-sim-"));
const wrangler = join(here, "..", "node_modules", ".bin", "wrangler");
// Its own process group, so workerd goes with it (a plain kill leaves workerd running).
const child = spawn(
  wrangler,
  ["dev", "-c", join(here, "wrangler.toml"), "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state, "--log-level", "warn"],
  { detached: true, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" } },
);
let log = "";
child.stderr.on("data", (d) => (log += d));
const stop = () => {
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {}
  rmSync(state, { recursive: true, force: true });
};
process.on("exit", stop);

const deadline = Date.now() + 90_000;
let figures;
for (;;) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/run?${params}`);
    if (r.ok) {
      figures = await r.json();
      break;
    }
    if (r.status !== 503) {
      console.error(`the simulation failed: ${r.status} ${await r.text()}\n${log}`);
      process.exit(1);
    }
  } catch {}
  if (Date.now() > deadline) {
    console.error(`wrangler dev did not start within 90 s:\n${log}`);
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 300));
}

if (args.includes("--json")) {
  console.log(JSON.stringify(figures, null, 2));
} else {
  const f = figures;
  const pct = (n) => `${((100 * n) / f.free_tier).toFixed(1)} %`;
  console.log(`one simulated day: ${f.workers} workers, ${f.coordinators} coordinators (restart share ${f.restart_share}); ${f.wall_ms} ms of wall time`);
  console.log(`  heartbeat interval told to coordinators  ${f.heartbeat_interval_told_s} s`);
  console.log(`  Worker requests                          ${f.worker_requests}  (${pct(f.worker_requests)} of the free tier)`);
  console.log(`    coordinator heartbeats                 ${f.coordinator_heartbeats}`);
  console.log(`    heartbeats for a change of workers     ${f.change_heartbeats}`);
  console.log(`    worker registrations via the router    ${f.worker_registrations_through_router}`);
  console.log(`  Durable Object requests (alarms incl.)   ${f.durable_object_requests}  (${pct(f.durable_object_requests)})`);
  console.log(`    alarms                                 ${f.alarms}`);
  console.log(`  rows written (setAlarm incl.)            ${f.rows_written}  (${pct(f.rows_written)})`);
}
if (args.includes("--check")) {
  const bad = [];
  if (figures.worker_requests > 10_000) bad.push(`Worker requests ${figures.worker_requests} > 10,000`);
  if (figures.durable_object_requests > 10_000) bad.push(`Durable Object requests ${figures.durable_object_requests} > 10,000`);
  if (figures.rows_written > 1_000) bad.push(`rows written ${figures.rows_written} > 1,000`);
  if (figures.meter_requests !== figures.worker_requests) bad.push(`the meter counted ${figures.meter_requests} requests, the simulation made ${figures.worker_requests}`);
  if (bad.length) {
    console.error(`liveness goals not met: ${bad.join("; ")}`);
    process.exit(1);
  }
  console.log("liveness goals met: ≤ 10,000 requests and ≤ 1,000 rows written a day, ≥ 90 % of the free tier left");
}
process.exit(0);

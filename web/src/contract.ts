// Generated from crates/rma-proto by scripts/gen-contract (ts-rs). Do not edit by hand:
// a test (contract_ts_is_up_to_date) fails when this file and the Rust types differ.

export type ErrorBody = { 
/**
 * Machine-readable code.
 */
error: string, 
/**
 * What went wrong, in words a person can act on.
 */
message: string, };

export type WorkerType = "gpu" | "storage" | "edge" | "cpu";

export type CoordinatorStatus = "healthy" | "unreachable" | "stale";

export type WorkerStatus = "active" | "stale" | "quarantined";

export type CoordinatorInfo = { 
/**
 * Id.
 */
coordinator_id: string, 
/**
 * Where the router reaches it.
 */
url: string, 
/**
 * Free text from its registration.
 */
location: string | null, 
/**
 * RFC 3339.
 */
registered_at: string, 
/**
 * RFC 3339.
 */
last_seen: string, 
/**
 * Health as the router sees it.
 */
status: CoordinatorStatus, };

export type RouterHealth = { 
/**
 * `healthy` when at least one coordinator is fresh and today's usage is projected under
 * 80 % of the free tier; else `degraded` (503 when no coordinator is fresh; 200 when only
 * the usage is high).
 */
status: string, 
/**
 * Fresh coordinators.
 */
coordinators: number, 
/**
 * In words.
 */
message: string, };

export type WorkerCounts = { 
/**
 * All registered.
 */
total: number, 
/**
 * In rotation.
 */
active: number, 
/**
 * Out of rotation.
 */
stale: number, };

export type CoordinatorHealth = { 
/**
 * `healthy` when at least one worker is active, else `degraded` (still HTTP 200: the
 * coordinator itself is up).
 */
status: string, 
/**
 * Its id.
 */
coordinator: string, 
/**
 * Its workers.
 */
workers: WorkerCounts, };

export type TopologyCoordinator = { 
/**
 * Id.
 */
id: string, 
/**
 * URL.
 */
url: string, 
/**
 * Number of workers it reported.
 */
workers: number, 
/**
 * Mean load it reported.
 */
load: number, 
/**
 * Health.
 */
status: CoordinatorStatus, 
/**
 * Requests the router sent it over the last minute.
 */
requests_last_minute: number, 
/**
 * Its last heartbeat, RFC 3339.
 */
last_seen: string, 
/**
 * Free text from its registration.
 */
location: string | null, 
/**
 * Requests the router has in flight there.
 */
active_requests: number, 
/**
 * Forwards to it that failed (no connection, 502, 503, timeout) over the last minute.
 */
failures_last_minute: number, 
/**
 * p99 of the router's round trips to it over the last minute or two, per service, ms.
 */
latency_p99_ms?: { [key in string]: number }, };

export type TopologyWorker = { 
/**
 * Id.
 */
id: string, 
/**
 * Primary type.
 */
type: WorkerType, 
/**
 * The coordinator holding it.
 */
coordinator: string, 
/**
 * Assigned services.
 */
services: Array<string>, 
/**
 * `active` or `stale`.
 */
status: WorkerStatus, 
/**
 * Load it reported.
 */
load: number, 
/**
 * Requests in flight on it.
 */
active_requests: number, 
/**
 * Requests sent to it over the last minute.
 */
requests_last_minute: number, 
/**
 * Its last heartbeat, RFC 3339.
 */
last_seen: string, 
/**
 * p99 of its coordinator's round trips to it, per service, ms.
 */
latency_p99_ms?: { [key in string]: number }, 
/**
 * Calls to it that failed over the last minute.
 */
failures_last_minute: number, 
/**
 * Of its services, those its coordinator lent it because their queue grew.
 */
placed?: Array<string>, };

export type Topology = { 
/**
 * Every registered coordinator.
 */
coordinators: Array<TopologyCoordinator>, 
/**
 * Every worker the coordinators reported.
 */
workers: Array<TopologyWorker>, };

export type UsageCounter = { 
/**
 * `requests` (every HTTP request the router answered), `registry_requests` (calls that
 * reach the registry: coordinator register / heartbeat / deregister and worker calls
 * passed on) or `rows_written` (registry rows written).
 */
name: string, 
/**
 * Counted today (UTC) since the router started.
 */
used: number, 
/**
 * `used` plus today's rate so far over the rest of the UTC day.
 */
projected: number, 
/**
 * What the Cloudflare free plan allows a day for the same thing.
 */
free_tier_limit: number, 
/**
 * `100 × (1 − projected / limit)`: negative once the projection is over the limit.
 */
headroom_percent: number, };

export type Usage = { 
/**
 * The UTC day counted, `YYYY-MM-DD`.
 */
day: string, 
/**
 * Seconds of the day counted so far (since midnight UTC or the router's start).
 */
counted_s: number, 
/**
 * The counters.
 */
counters: Array<UsageCounter>, 
/**
 * Set when a projection passes 80 % of its limit: what and by how much.
 */
warning: string | null, };

export type Ack = { 
/**
 * `ok`, `deregistered`…
 */
status: string, };

export type WorkerSummary = { 
/**
 * Worker id.
 */
id: string, 
/**
 * Primary type.
 */
type: WorkerType, 
/**
 * Assigned services.
 */
services: Array<string>, 
/**
 * `active` or `stale`.
 */
status: WorkerStatus, 
/**
 * Requests the coordinator has in flight on it.
 */
active_requests: number, 
/**
 * Load the worker reported (0.0–1.0 per core, averaged).
 */
load: number, 
/**
 * Requests sent to it over the last minute.
 */
requests_last_minute: number, 
/**
 * Its last heartbeat, RFC 3339.
 */
last_seen: string, 
/**
 * The URL it can also be called at, when it has one.
 */
tunnel_url?: string | null, 
/**
 * p99 of the coordinator's round trips to it over the last minute or two, per service, ms.
 */
latency_p99_ms?: { [key in string]: number }, 
/**
 * Calls to it that failed (lost, 5xx) over the last minute.
 */
failures_last_minute: number, 
/**
 * Of its services, those its coordinator assigned live because their queue grew; they are
 * taken back when it drains.
 */
placed?: Array<string>, };

export type CoordinatorRegister = { 
/**
 * Stable id; the router makes one up when absent.
 */
coordinator_id?: string | null, 
/**
 * The URL the router reaches the coordinator at.
 */
url?: string | null, 
/**
 * Same as `url`, the name the specification uses for tunnels; `url` wins when both are set.
 */
tunnel_url?: string | null, 
/**
 * Free text: where the coordinator runs.
 */
location?: string | null, 
/**
 * Services the coordinator can serve now (also carried by heartbeats).
 */
services?: Array<string> | null, };

export type CoordinatorRegistered = { 
/**
 * Always `registered`.
 */
status: string, 
/**
 * Always `edge_coordinator`.
 */
role: string, 
/**
 * The id the coordinator is known by.
 */
coordinator_id: string, 
/**
 * Coordinators in the registry after this one.
 */
total_coordinators: number, 
/**
 * Human-readable confirmation.
 */
message: string, 
/**
 * How often the router wants heartbeats, in ms; absent: the coordinator's own interval.
 * A router that pays per request (the edge) asks for fewer.
 */
heartbeat_interval_ms?: number | null, };

export type CoordinatorHeartbeat = { 
/**
 * Who is beating.
 */
coordinator_id: string, 
/**
 * Requests in flight at the coordinator.
 */
active_requests: number, 
/**
 * Mean load of its active workers.
 */
load: number, 
/**
 * Service type → number of active workers offering it.
 */
services: { [key in string]: number }, 
/**
 * Its workers.
 */
workers: Array<WorkerSummary>, };

export type WorkerHeartbeat = { 
/**
 * Who is beating.
 */
worker_id: string, 
/**
 * Free text from the worker: `ok`, `busy`, `draining`.
 */
status: string, 
/**
 * Load average per core (0.0 = idle, 1.0 = every core busy).
 */
current_load: number, 
/**
 * Service requests running on the worker now.
 */
active_requests: number, 
/**
 * Heartbeats it failed to deliver since it started (for the success rate).
 */
heartbeats_failed: number, };

export type HeartbeatReply = { 
/**
 * `ok`.
 */
status: string, 
/**
 * Ids of nodes revoked within a credential's lifetime.
 */
revoked: Array<string>, 
/**
 * The heartbeat interval the router asks for now, when it sets one: the edge router
 * lengthens it as coordinators join, so their heartbeats stay within its daily budget.
 */
heartbeat_interval_ms?: number, };

export type InviteRequest = { 
/**
 * `coordinator`, `worker` or `client`.
 */
role: string, 
/**
 * The services the node may run (workers) or hold (coordinators); absent: any.
 */
services?: Array<string> | null, 
/**
 * How long the token may be used [900 s].
 */
ttl_s?: number | null, 
/**
 * How many nodes may enrol with it [1].
 */
uses?: number | null, 
/**
 * Who runs the node(s) it enrols (a person or an organisation): spot checks compare
 * answers of workers of different owners. Absent: each node is its own owner.
 */
owner?: string | null, 
/**
 * The router URL the token names (what nodes will reach the router at); the router's
 * own address when absent.
 */
router_url?: string | null, };

export type Invite = { 
/**
 * The join token, for `--join` / `RMA_JOIN_TOKEN`.
 */
token: string, 
/**
 * The role it enrols.
 */
role: string, 
/**
 * RFC 3339.
 */
expires_at: string, 
/**
 * Enrolments it allows.
 */
uses: number, };

export type EnrollRequest = { 
/**
 * The join token.
 */
token: string, 
/**
 * The node's Ed25519 public key, base64url.
 */
public_key: string, 
/**
 * The id the node would like; the router makes it unique.
 */
node_id?: string | null, };

export type Enrolled = { 
/**
 * The node's id in the federation.
 */
node_id: string, 
/**
 * Its role.
 */
role: string, 
/**
 * Its credential (a JWT signed by the federation key).
 */
credential: string, 
/**
 * RFC 3339.
 */
expires_at: string, 
/**
 * The federation's public key, base64url: members check credentials with it.
 */
federation_key: string, };

export type RenewRequest = { 
/**
 * The node.
 */
node_id: string, 
/**
 * Unix seconds when signed; within 5 minutes of the router's clock.
 */
timestamp: number, 
/**
 * Its signature of `rma-renew-v1\n{node_id}\n{timestamp}`, base64url.
 */
signature: string, };

export type NodeInfo = { 
/**
 * Id.
 */
node_id: string, 
/**
 * Role.
 */
role: string, 
/**
 * Services it may run or hold; absent: any.
 */
services: Array<string> | null, 
/**
 * Who runs it, when the invite said.
 */
owner: string | null, 
/**
 * Its public key, base64url.
 */
public_key: string, 
/**
 * RFC 3339.
 */
enrolled_at: string, 
/**
 * RFC 3339, when revoked.
 */
revoked_at: string | null, };

export type JobAccepted = { 
/**
 * `{coordinator_id}-j{16 hex}`.
 */
job_id: string, 
/**
 * Always [`JobState::Queued`].
 */
state: JobState, 
/**
 * Where to ask for it: `/api/jobs/{id}`.
 */
location: string, };

export type JobState = "queued" | "running" | "done" | "failed";

export type JobProgress = { 
/**
 * Done so far.
 */
done: number, 
/**
 * In all (0 while unknown).
 */
total: number, };

export type Verdict = "agreed" | "unverified" | "disagreed";

export type JobStep = { 
/**
 * `store`, `enhance`, `ocr`, `pdf-text` or `extract`.
 */
step: string, 
/**
 * The worker that ran it.
 */
worker: string, 
/**
 * The coordinator that dispatched it.
 */
coordinator: string, 
/**
 * The HTTP status it answered.
 */
status: number, 
/**
 * Milliseconds it took, dispatch included.
 */
ms: number, 
/**
 * `hit` or `miss` when the cache was consulted.
 */
cache: string | null, 
/**
 * The spot check's verdict, when this step was checked on a second worker.
 */
verified?: Verdict, 
/**
 * The cache entry its answer was kept under (a hash), so deleting the job deletes it too.
 */
cache_key?: string, };

export type JobView = { 
/**
 * The job id.
 */
id: string, 
/**
 * The service asked for.
 */
service: string, 
/**
 * Where it is.
 */
state: JobState, 
/**
 * Pages or steps done, live while it runs.
 */
progress: JobProgress, 
/**
 * The coordinator holding it.
 */
coordinator: string, 
/**
 * The worker(s) that served it, comma-separated for `process`.
 */
worker: string | null, 
/**
 * Times it was started (more than 1 after a restart cut it off).
 */
runs: number, 
/**
 * RFC 3339.
 */
created_at: string, 
/**
 * RFC 3339, when it first started.
 */
started_at: string | null, 
/**
 * RFC 3339, when it finished.
 */
finished_at: string | null, 
/**
 * Milliseconds between acceptance and start.
 */
queued_ms: number | null, 
/**
 * Milliseconds it has run (until now while running).
 */
run_ms: number | null, 
/**
 * Why it failed, in words.
 */
error: string | null, 
/**
 * The code of the failure ([`crate::error_code`]).
 */
error_code?: string, 
/**
 * The HTTP status of its answer.
 */
status: number | null, 
/**
 * The answer, when it is JSON.
 */
result: ServiceResult | null, 
/**
 * The steps of `process`, copied from its result.
 */
steps?: Array<JobStep>, 
/**
 * The spot check's verdict (the worst of its steps' for `process`), when it was checked.
 */
verified?: Verdict, 
/**
 * Where to fetch the raw answer (an enhanced PNG, say): `/api/jobs/{id}/result`.
 */
result_url?: string, 
/**
 * Facts a person corrected, oldest first; the result itself is left as read.
 */
corrections: Array<Correction>, };

export type Correction = { 
/**
 * As asked.
 */
field: string, 
/**
 * As asked.
 */
index?: number, 
/**
 * The value a person gave.
 */
value: string, 
/**
 * What was read before.
 */
was: string, 
/**
 * Always `person`: the value did not come from a machine.
 */
by: string, 
/**
 * RFC 3339.
 */
at: string, };

export type CorrectionRequest = { 
/**
 * `amounts`, `dates`, `references` or `letter_type`.
 */
field: string, 
/**
 * Which one of the list (0-based); absent for `letter_type`.
 */
index?: number, 
/**
 * The right value: an amount as `1482.37`, a date as `YYYY-MM-DD`, a reference as
 * printed, a letter type by its name.
 */
value: string, };

export type Word = { 
/**
 * The word.
 */
text: string, 
/**
 * Tesseract's confidence, 0–100.
 */
confidence: number, 
/**
 * Left edge in pixels.
 */
x: number, 
/**
 * Top edge in pixels.
 */
y: number, 
/**
 * Width in pixels.
 */
w: number, 
/**
 * Height in pixels.
 */
h: number, };

export type PageSource = "text" | "ocr" | "none";

export type Page = { 
/**
 * 1-based page number.
 */
page: number, 
/**
 * The text, lines separated by `\n`.
 */
text: string, 
/**
 * Mean OCR word confidence, 0–100, when the page was OCR'd.
 */
confidence?: number, 
/**
 * Where the text came from (PDF pages only).
 */
source?: PageSource, 
/**
 * Word boxes, when asked for.
 */
words?: Array<Word>, };

export type OcrResult = { 
/**
 * All pages' text, pages separated by a blank line.
 */
text: string, 
/**
 * Each page.
 */
pages: Array<Page>, 
/**
 * Mean confidence over pages, 0–100.
 */
confidence: number, 
/**
 * The language(s) read, `eng` or `eng+fra`.
 */
lang: string, 
/**
 * Always `tesseract`.
 */
engine: string, };

export type PdfTextResult = { 
/**
 * All pages' text, pages separated by a blank line.
 */
text: string, 
/**
 * Pages in the PDF.
 */
page_count: number, 
/**
 * Each page.
 */
pages: Array<Page>, 
/**
 * Pages without a text layer that were OCR'd.
 */
ocr_pages: Array<number>, 
/**
 * Pages left without text (no text layer, OCR off or unavailable).
 */
pages_without_text: Array<number>, };

export type StoredObject = { 
/**
 * BLAKE3 of the bytes, hex: `GET /api/service/store/{hash}` reads it back.
 */
hash: string, 
/**
 * Bytes.
 */
size: number, 
/**
 * Its media type (sniffed, else as sent).
 */
content_type: string, 
/**
 * False when the same bytes were stored already.
 */
created: boolean, };

export type CacheStored = { 
/**
 * The cache key.
 */
key: string, 
/**
 * Bytes stored.
 */
size: number, };

export type Amount = { 
/**
 * Normalised: digits, a dot, two decimals ("1312.15"); negative with a leading '-'.
 */
value: string, 
/**
 * As printed.
 */
text: string, 
/**
 * Always GBP for now.
 */
currency: string, 
/**
 * The line it was on.
 */
line: string, 
/**
 * What the amount is, when the words around it say: `balance`, `arrears`, `instalment`,
 * `costs`, `minimum_payment`, `offer`, `overpayment`, `payment`.
 */
role?: string, 
/**
 * The words that decided the role.
 */
role_evidence?: string, 
/**
 * How sure the reading is: the lowest Tesseract confidence (0–100) of the words it came
 * from; absent when the text was not read by OCR (a PDF's text, typed text).
 */
confidence?: number, 
/**
 * Set when the figure may be misread: an adviser checks it against the letter.
 */
uncertain: boolean, 
/**
 * Why it is uncertain (or how an unclear print was read), in plain words.
 */
reason?: string, };

export type Date = { 
/**
 * ISO 8601 (`YYYY-MM-DD`).
 */
date: string, 
/**
 * As printed.
 */
text: string, 
/**
 * The line it was on.
 */
line: string, 
/**
 * What the date is, when the words around it say: `deadline` (pay by, within, before),
 * `letter_date`, `hearing`, `due` (an instalment's), `period` (from … to …).
 */
role?: string, 
/**
 * The words that decided the role.
 */
role_evidence?: string, 
/**
 * How sure the reading is: the lowest Tesseract confidence (0–100) of the words it came
 * from; absent when the text was not read by OCR (a PDF's text, typed text).
 */
confidence?: number, 
/**
 * Set when the figure may be misread: an adviser checks it against the letter.
 */
uncertain: boolean, 
/**
 * Why it is uncertain (or how an unclear print was read), in plain words.
 */
reason?: string, };

export type Reference = { 
/**
 * The number as printed.
 */
value: string, 
/**
 * The label before it ("Account number", "Our reference").
 */
label: string, 
/**
 * The line it was on.
 */
line: string, 
/**
 * How sure the reading is: the lowest Tesseract confidence (0–100) of the words it came
 * from; absent when the text was not read by OCR (a PDF's text, typed text).
 */
confidence?: number, 
/**
 * Set when the figure may be misread: an adviser checks it against the letter.
 */
uncertain: boolean, 
/**
 * Why it is uncertain (or how an unclear print was read), in plain words.
 */
reason?: string, };

export type Sender = { 
/**
 * Its name.
 */
name: string, 
/**
 * Why we think so.
 */
evidence: string, };

export type Facts = { 
/**
 * `council_tax`, `universal_credit` (DWP), `hmrc`, `bank_statement`, `credit_arrears`
 * (bank, card or loan arrears), `bnpl`, `default_notice` (Consumer Credit Act),
 * `debt_collection`, `county_court`, `enforcement_agent`, `utility` (energy), `water`,
 * `rent_arrears`, `parking_charge` or `other`.
 */
letter_type: string, 
/**
 * The phrases that decided the type.
 */
letter_type_evidence: Array<string>, 
/**
 * The sender.
 */
sender: Sender | null, 
/**
 * The original creditor, when a debt was sold or passed on.
 */
original_creditor: string | null, 
/**
 * Money amounts, in order of appearance, without repeats.
 */
amounts: Array<Amount>, 
/**
 * Dates, in order of appearance, without repeats.
 */
dates: Array<Date>, 
/**
 * Reference and account numbers.
 */
references: Array<Reference>, 
/**
 * Sort codes (`NN-NN-NN`).
 */
sort_codes: Array<string>, 
/**
 * National Insurance numbers (`QQ123456C`).
 */
national_insurance_numbers: Array<string>, 
/**
 * Set when the facts cannot be trusted as a whole, in plain words: no text was found on
 * the page (blank, upside down, too dark or blurred), so nothing was extracted.
 */
warning?: string, };

export type TextSource = "text" | "json" | "pdf-text" | "ocr";

export type ExtractResult = { 
/**
 * Where the text came from.
 */
text_source: TextSource, 
/**
 * The text read, when a document (not text) was sent.
 */
text?: string, 
/**
 * `council_tax`, `universal_credit` (DWP), `hmrc`, `bank_statement`, `credit_arrears`
 * (bank, card or loan arrears), `bnpl`, `default_notice` (Consumer Credit Act),
 * `debt_collection`, `county_court`, `enforcement_agent`, `utility` (energy), `water`,
 * `rent_arrears`, `parking_charge` or `other`.
 */
letter_type: string, 
/**
 * The phrases that decided the type.
 */
letter_type_evidence: Array<string>, 
/**
 * The sender.
 */
sender: Sender | null, 
/**
 * The original creditor, when a debt was sold or passed on.
 */
original_creditor: string | null, 
/**
 * Money amounts, in order of appearance, without repeats.
 */
amounts: Array<Amount>, 
/**
 * Dates, in order of appearance, without repeats.
 */
dates: Array<Date>, 
/**
 * Reference and account numbers.
 */
references: Array<Reference>, 
/**
 * Sort codes (`NN-NN-NN`).
 */
sort_codes: Array<string>, 
/**
 * National Insurance numbers (`QQ123456C`).
 */
national_insurance_numbers: Array<string>, 
/**
 * Set when the facts cannot be trusted as a whole, in plain words: no text was found on
 * the page (blank, upside down, too dark or blurred), so nothing was extracted.
 */
warning?: string, };

export type DocumentKind = "image" | "pdf";

export type StoredRefs = { 
/**
 * The document as sent.
 */
original?: StoredObject, 
/**
 * The cleaned-up image.
 */
enhanced?: StoredObject, 
/**
 * This result itself (without this field).
 */
result?: StoredObject, };

export type ProcessResult = { 
/**
 * Image or PDF.
 */
kind: DocumentKind, 
/**
 * Its media type.
 */
content_type: string, 
/**
 * The text read.
 */
text: string, 
/**
 * Each page.
 */
pages: Array<Page>, 
/**
 * PDF pages that were OCR'd (absent for images).
 */
ocr_pages: Array<number> | null, 
/**
 * Mean OCR confidence (images).
 */
confidence: number | null, 
/**
 * The facts.
 */
facts: ExtractResult, 
/**
 * Which step ran where.
 */
steps: Array<JobStep>, 
/**
 * What was saved.
 */
stored: StoredRefs, };

export type ServiceResult = ProcessResult | ExtractResult | OcrResult | PdfTextResult | StoredObject | { [key: string]: unknown };

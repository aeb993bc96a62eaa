// Calls to the rma HTTP contract the page makes. The types come from contract.ts, which is
// generated from the Rust types in crates/rma-proto (scripts/gen-contract), never by hand.

import type { CorrectionRequest, ErrorBody, JobAccepted, JobView } from "./contract";
export type * from "./contract";

/** An error from the API, in words a person can act on. */
export class ApiError extends Error {
  constructor(public code: string, message: string, public status: number) {
    super(message);
  }
}

const PLAIN: Record<string, string> = {
  unsupported_media_type: "This file isn't a PDF or an image rma can read (PDF, JPEG, PNG, TIFF or WebP).",
  payload_too_large: "This file is too big. Try a smaller scan, or split the PDF.",
  no_worker: "No computer that can do this is connected right now. It will start when one is.",
  no_coordinator: "The service is starting up or offline. Try again in a minute.",
  timeout: "Reading took too long and was stopped. Try again, or send fewer pages at once.",
  upstream_failed: "A computer in the network failed while working on it. Try again.",
  rate_limited: "Too many documents at once from here. Wait a moment, then press Try again.",
};

/** A friendly sentence for an error code, with the server's detail after it. */
export function plainWords(code: string | undefined, message: string): string {
  const lead = code ? PLAIN[code] : undefined;
  return lead ? `${lead} (${message})` : message;
}

async function errorOf(r: Response): Promise<ApiError> {
  try {
    const body = (await r.json()) as Partial<ErrorBody>;
    return new ApiError(body.error ?? "error", plainWords(body.error, body.message ?? r.statusText), r.status);
  } catch {
    return new ApiError("error", `${r.status} ${r.statusText}`, r.status);
  }
}

/** Sends a document as a job; returns the job id. */
export async function submit(service: string, file: Blob): Promise<string> {
  const r = await fetch(`/api/service/${service}`, {
    method: "POST",
    headers: { "content-type": file.type || "application/octet-stream", prefer: "respond-async" },
    body: file,
  });
  if (r.status !== 202) throw await errorOf(r);
  const body = (await r.json()) as JobAccepted;
  return body.job_id;
}

export async function job(id: string): Promise<JobView> {
  const r = await fetch(`/api/jobs/${encodeURIComponent(id)}`);
  if (!r.ok) throw await errorOf(r);
  return (await r.json()) as JobView;
}

/** Keeps a person's correction of one of a job's facts; answers the job with it. */
export async function correct(id: string, req: CorrectionRequest): Promise<JobView> {
  const r = await fetch(`/api/jobs/${encodeURIComponent(id)}/corrections`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(req),
  });
  if (!r.ok) throw await errorOf(r);
  return (await r.json()) as JobView;
}

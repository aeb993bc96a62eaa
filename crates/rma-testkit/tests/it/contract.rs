//! The web UI's TypeScript types are generated from rma-proto (ts-rs) into `web/src/contract.ts`.
//! This test fails when the file differs from what the Rust types say, so the two cannot drift;
//! `scripts/gen-contract` (this test with `RMA_WRITE_CONTRACT=1`) rewrites it.

use rma_proto::WorkerType;
use rma_proto::api::{
    Ack, CoordinatorHealth, CoordinatorHeartbeat, CoordinatorInfo, CoordinatorRegister,
    CoordinatorRegistered, CoordinatorStatus, ErrorBody, RouterHealth, Topology,
    TopologyCoordinator, TopologyWorker, Usage, UsageCounter, WorkerCounts, WorkerHeartbeat,
    WorkerStatus, WorkerSummary,
};
use rma_proto::job::{
    Correction, CorrectionRequest, JobAccepted, JobProgress, JobState, JobStep, JobView, Verdict,
};
use rma_proto::membership::{
    EnrollRequest, Enrolled, HeartbeatReply, Invite, InviteRequest, NodeInfo, RenewRequest,
};
use rma_proto::results::{
    Amount, CacheStored, Date, DocumentKind, ExtractResult, Facts, OcrResult, Page, PageSource,
    PdfTextResult, ProcessResult, Reference, Sender, ServiceResult, StoredObject, StoredRefs,
    TextSource, Word,
};
use ts_rs::{Config, TS};

fn decl<T: TS>(cfg: &Config) -> String {
    format!("export {}", T::decl(cfg))
}

fn generated() -> String {
    let cfg = Config::new().with_large_int("number");
    let decls = [
        // The HTTP API.
        decl::<ErrorBody>(&cfg),
        decl::<WorkerType>(&cfg),
        decl::<CoordinatorStatus>(&cfg),
        decl::<WorkerStatus>(&cfg),
        decl::<CoordinatorInfo>(&cfg),
        decl::<RouterHealth>(&cfg),
        decl::<WorkerCounts>(&cfg),
        decl::<CoordinatorHealth>(&cfg),
        decl::<TopologyCoordinator>(&cfg),
        decl::<TopologyWorker>(&cfg),
        decl::<Topology>(&cfg),
        decl::<UsageCounter>(&cfg),
        decl::<Usage>(&cfg),
        // Membership and liveness (the edge router in edge/ implements them).
        decl::<Ack>(&cfg),
        decl::<WorkerSummary>(&cfg),
        decl::<CoordinatorRegister>(&cfg),
        decl::<CoordinatorRegistered>(&cfg),
        decl::<CoordinatorHeartbeat>(&cfg),
        decl::<WorkerHeartbeat>(&cfg),
        decl::<HeartbeatReply>(&cfg),
        decl::<InviteRequest>(&cfg),
        decl::<Invite>(&cfg),
        decl::<EnrollRequest>(&cfg),
        decl::<Enrolled>(&cfg),
        decl::<RenewRequest>(&cfg),
        decl::<NodeInfo>(&cfg),
        // Jobs.
        decl::<JobAccepted>(&cfg),
        decl::<JobState>(&cfg),
        decl::<JobProgress>(&cfg),
        decl::<Verdict>(&cfg),
        decl::<JobStep>(&cfg),
        decl::<JobView>(&cfg),
        decl::<Correction>(&cfg),
        decl::<CorrectionRequest>(&cfg),
        // Results.
        decl::<Word>(&cfg),
        decl::<PageSource>(&cfg),
        decl::<Page>(&cfg),
        decl::<OcrResult>(&cfg),
        decl::<PdfTextResult>(&cfg),
        decl::<StoredObject>(&cfg),
        decl::<CacheStored>(&cfg),
        decl::<Amount>(&cfg),
        decl::<Date>(&cfg),
        decl::<Reference>(&cfg),
        decl::<Sender>(&cfg),
        decl::<Facts>(&cfg),
        decl::<TextSource>(&cfg),
        decl::<ExtractResult>(&cfg),
        decl::<DocumentKind>(&cfg),
        decl::<StoredRefs>(&cfg),
        decl::<ProcessResult>(&cfg),
        decl::<ServiceResult>(&cfg),
    ];
    let mut out = String::from(
        "// Generated from crates/rma-proto by scripts/gen-contract (ts-rs). Do not edit by hand:\n\
         // a test (contract_ts_is_up_to_date) fails when this file and the Rust types differ.\n\n",
    );
    for d in decls {
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn contract_ts_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/src/contract.ts");
    let want = generated();
    if std::env::var_os("RMA_WRITE_CONTRACT").is_some() {
        std::fs::write(&path, &want).expect("write web/src/contract.ts");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "web/src/contract.ts is out of date with rma-proto; run scripts/gen-contract"
    );
}

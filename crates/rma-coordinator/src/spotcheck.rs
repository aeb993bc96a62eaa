//! Spot checks: a share of answers (and every answer of a call with `?verify=true`) is asked of
//! a second worker of another owner too, the way BOINC validates volunteers' results. Equal
//! answers: `agreed`. Different answers: a third worker of a third owner breaks the tie, the
//! odd one out gets a strike and the majority's answer is the one returned; without a third,
//! the first answer stands. Either way the answer is flagged `disagreed`. A worker with
//! `quarantine_after` strikes gets no new work and shows as `quarantined` in the topology.

use std::collections::HashSet;

use rma_proto::job::Verdict;
use rma_proto::{ServiceCall, ServiceReply};

use crate::dispatch::{Dispatcher, Served};

/// `true` for a call whose answer is to be checked: asked for, or drawn at the configured share.
pub(crate) fn drawn(d: &Dispatcher, forced: bool) -> bool {
    forced || (d.spot_check_share > 0.0 && rand::random::<f64>() < d.spot_check_share)
}

fn same(a: &ServiceReply, b: &ServiceReply) -> bool {
    a.status == b.status && a.body == b.body
}

/// Checks `served`, the answer to `call`, on other owners' workers; returns it (or the
/// majority's answer) with its verdict.
pub(crate) async fn check(d: &Dispatcher, call: &ServiceCall, mut served: Served) -> Served {
    let first = served.worker.clone();
    let mut owners: HashSet<String> = d.registry.lock().owner_of(&first).into_iter().collect();
    let exclude = |owners: &HashSet<String>| d.registry.lock().owned_by(owners);
    let verdict = match d.ask_one(call, &exclude(&owners)).await {
        None => Verdict::Unverified,
        Some((_, second)) if same(&served.reply, &second) => Verdict::Agreed,
        Some((w2, second)) => {
            owners.extend(d.registry.lock().owner_of(&w2));
            let odd_one = match d.ask_one(call, &exclude(&owners)).await {
                Some((_, third)) if same(&third, &served.reply) => Some(w2.clone()),
                Some((_, third)) if same(&third, &second) => {
                    served.reply = second;
                    served.worker = w2.clone();
                    Some(first.clone())
                }
                _ => None,
            };
            tracing::warn!(service = %call.service, first = %first, second = %w2, odd_one = ?odd_one, "spot check: the answers differ");
            if let Some(w) = odd_one {
                let quarantined = {
                    let mut reg = d.registry.lock();
                    reg.strike(&w, d.quarantine_after)
                };
                if quarantined {
                    tracing::warn!(worker = %w, "worker quarantined: it lost too many spot checks; it gets no new work");
                    metrics::counter!("rma_coordinator_quarantined_total").increment(1);
                    d.registry.changed();
                }
            }
            Verdict::Disagreed
        }
    };
    metrics::counter!("rma_coordinator_spot_checks_total", "verdict" => verdict.as_str())
        .increment(1);
    served.verified = Some(verdict);
    served
}

/// Takes `verify=true` (or `verify=1`) out of a call's query: whether it was there.
pub(crate) fn take_verify(call: &mut ServiceCall) -> bool {
    let mut forced = false;
    let kept: Vec<&str> = call
        .query
        .split('&')
        .filter(|p| {
            let is = matches!(*p, "verify=true" | "verify=1");
            forced |= is;
            !is && !p.starts_with("verify=")
        })
        .collect();
    call.query = kept.join("&");
    forced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_is_taken_out_of_the_query() {
        let mut c = ServiceCall {
            query: "lang=eng&verify=true".into(),
            ..Default::default()
        };
        assert!(take_verify(&mut c));
        assert_eq!(c.query, "lang=eng");
        let mut c = ServiceCall {
            query: "verify=false&boxes=true".into(),
            ..Default::default()
        };
        assert!(!take_verify(&mut c));
        assert_eq!(c.query, "boxes=true");
    }
}

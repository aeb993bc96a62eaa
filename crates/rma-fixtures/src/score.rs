//! Scores what `extract` found on a corpus letter against its ground truth (issue 10).
//!
//! Per field: how many facts the truth has, how many were extracted, how many of those are
//! right, and — what matters most — how many are **wrong and unflagged**: a value that is not on
//! the letter, reported without `uncertain`. A right value that was flagged still counts as
//! found (the adviser checks it); a wrong value that was flagged is not wrong-and-unflagged.

use std::collections::BTreeMap;

use rma_proto::results::Facts;

use crate::corpus::Truth;

/// Counts for one kind of fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Facts on the letter.
    pub truth: u32,
    /// Facts extracted.
    pub extracted: u32,
    /// Extracted facts whose value is on the letter.
    pub right: u32,
    /// Extracted facts not on the letter, flagged uncertain.
    pub wrong_flagged: u32,
    /// Extracted facts not on the letter, not flagged: the count that must be 0.
    pub wrong_unflagged: u32,
    /// Right values that were flagged (an adviser checks them needlessly).
    pub right_flagged: u32,
    /// Right values whose truth has a role.
    pub role_scored: u32,
    /// …and whose extracted role is that role.
    pub role_right: u32,
}

impl Counts {
    /// Adds another letter's counts.
    pub fn add(&mut self, o: &Counts) {
        self.truth += o.truth;
        self.extracted += o.extracted;
        self.right += o.right;
        self.wrong_flagged += o.wrong_flagged;
        self.wrong_unflagged += o.wrong_unflagged;
        self.right_flagged += o.right_flagged;
        self.role_scored += o.role_scored;
        self.role_right += o.role_right;
    }

    /// Right / extracted (1 when nothing was extracted).
    pub fn precision(&self) -> f64 {
        ratio(self.right, self.extracted)
    }

    /// Right / truth.
    pub fn recall(&self) -> f64 {
        ratio(self.right, self.truth)
    }

    /// Roles right / roles scored.
    pub fn role_accuracy(&self) -> f64 {
        ratio(self.role_right, self.role_scored)
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        1.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

/// One letter's score.
#[derive(Debug, Clone, Default)]
pub struct Score {
    /// Amounts.
    pub amounts: Counts,
    /// Dates.
    pub dates: Counts,
    /// References (no roles, no flags counted).
    pub references: Counts,
    /// Letters whose sender was named right (0 or 1).
    pub sender: u32,
    /// Letters whose kind was named right (0 or 1).
    pub kind: u32,
    /// Letters scored (1).
    pub letters: u32,
    /// What went wrong, one line each, for reading.
    pub misses: Vec<String>,
}

impl Score {
    /// Adds another letter's score (misses are kept).
    pub fn add(&mut self, o: &Score) {
        self.amounts.add(&o.amounts);
        self.dates.add(&o.dates);
        self.references.add(&o.references);
        self.sender += o.sender;
        self.kind += o.kind;
        self.letters += o.letters;
        self.misses.extend(o.misses.iter().cloned());
    }
}

/// Letters and their names, lower-cased, for comparing senders.
fn squash(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether `found` names the sender `truth`: one contains the other, ignoring case, spaces and
/// punctuation ("Leeds City Council" and "LEEDS CITY COUNCIL"; "Lowell" for "Lowell
/// Financial Ltd").
pub fn same_sender(truth: &str, found: &str) -> bool {
    let (t, f) = (squash(truth), squash(found));
    f.len() >= 3 && (t.contains(&f) || f.contains(&t))
}

struct Found<'a> {
    value: &'a str,
    role: Option<&'a str>,
    uncertain: bool,
}

fn count(
    field: &str,
    id: &str,
    truth: &[crate::corpus::Fact],
    found: &[Found<'_>],
    misses: &mut Vec<String>,
) -> Counts {
    let mut c = Counts {
        truth: truth.len() as u32,
        extracted: found.len() as u32,
        ..Counts::default()
    };
    for f in found {
        match truth.iter().find(|t| t.value == f.value) {
            Some(t) => {
                c.right += 1;
                c.right_flagged += u32::from(f.uncertain);
                if let Some(role) = t.role {
                    c.role_scored += 1;
                    if f.role == Some(role) {
                        c.role_right += 1;
                    } else {
                        misses.push(format!(
                            "{id}: {field} {} has role {:?}, truth {role}",
                            f.value, f.role
                        ));
                    }
                }
            }
            None if f.uncertain => c.wrong_flagged += 1,
            None => {
                c.wrong_unflagged += 1;
                misses.push(format!("{id}: {field} {} is WRONG and unflagged", f.value));
            }
        }
    }
    for t in truth {
        if !found.iter().any(|f| f.value == t.value) {
            misses.push(format!("{id}: {field} {} missed", t.value));
        }
    }
    c
}

/// Scores `facts` against `truth`.
pub fn score(truth: &Truth, facts: &Facts) -> Score {
    let mut misses = Vec::new();
    let amounts: Vec<Found<'_>> = facts
        .amounts
        .iter()
        .map(|a| Found {
            value: &a.value,
            role: a.role.as_deref(),
            uncertain: a.trust.uncertain,
        })
        .collect();
    let dates: Vec<Found<'_>> = facts
        .dates
        .iter()
        .map(|d| Found {
            value: &d.date,
            role: d.role.as_deref(),
            uncertain: d.trust.uncertain,
        })
        .collect();
    let refs_truth: Vec<crate::corpus::Fact> = truth
        .references
        .iter()
        .map(|r| crate::corpus::Fact {
            value: r.clone(),
            role: None,
        })
        .collect();
    let refs: Vec<Found<'_>> = facts
        .references
        .iter()
        .map(|r| Found {
            value: &r.value,
            role: None,
            uncertain: r.trust.uncertain,
        })
        .collect();
    let a = count("amount", &truth.id, &truth.amounts, &amounts, &mut misses);
    let d = count("date", &truth.id, &truth.dates, &dates, &mut misses);
    let r = count("reference", &truth.id, &refs_truth, &refs, &mut misses);
    let sender_ok = facts
        .sender
        .as_ref()
        .is_some_and(|s| same_sender(&truth.sender, &s.name));
    if !sender_ok {
        misses.push(format!(
            "{}: sender {:?}, truth {}",
            truth.id,
            facts.sender.as_ref().map(|s| &s.name),
            truth.sender
        ));
    }
    let kind_ok = facts.letter_type == truth.kind;
    if !kind_ok {
        misses.push(format!(
            "{}: kind {}, truth {}",
            truth.id, facts.letter_type, truth.kind
        ));
    }
    Score {
        amounts: a,
        dates: d,
        references: r,
        sender: u32::from(sender_ok),
        kind: u32::from(kind_ok),
        letters: 1,
        misses,
    }
}

/// Scores grouped by a label (the condition, the family), in label order.
pub type ByLabel = BTreeMap<String, Score>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_match_loosely_but_not_emptily() {
        assert!(same_sender("Lowell Financial Ltd", "Lowell"));
        assert!(same_sender("Leeds City Council", "LEEDS CITY COUNCIL"));
        assert!(!same_sender("Leeds City Council", ""));
        assert!(!same_sender("Leeds City Council", "Derby City Council"));
    }
}

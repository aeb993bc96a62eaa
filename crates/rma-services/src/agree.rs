//! Facts from several readings of one page (issue 10): OCR of the image as sent and of the
//! cleaned image read some lines differently. Each reading is extracted on its own; then, per
//! fact:
//!
//! - a value that the readings agree on is kept once, from the reading that was surest of it;
//!   it is flagged only if every reading that found it flagged it;
//! - a value one reading found where another read a different value on the same line is a
//!   **disagreement**: the surer value is kept and flagged, naming both ("the page reads two
//!   ways");
//! - a value only one reading found, with nothing against it, is kept as that reading judged it.
//!
//! The kind of letter is decided on all readings together; the sender comes from the reading
//! surest of it.

use rma_proto::results::{Amount, Date, Facts, Reference, Trust, Word};

use crate::extract::{amounts_in, apply_confidence, classify, dates_in, extract};

/// Below this confidence a fact that only one of several readings found is flagged: with no
/// second reading to agree, confidence alone must carry it (on the corpus a date read `8` for
/// `3` at 85 % by one reading only was the last wrong fact unflagged).
pub(crate) const SOLE_READING_BELOW: u8 = 92;

/// One reading of a page: its text and, when read by OCR, its words with confidences.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reading {
    /// The text, lines separated by `\n`.
    pub text: String,
    /// OCR's words (empty when the text was not read by OCR).
    pub words: Vec<Word>,
}

/// What merging needs to know of a fact.
trait Fact: Clone {
    fn key(&self) -> &str;
    fn printed(&self) -> &str;
    fn line(&self) -> &str;
    fn trust(&self) -> &Trust;
    fn trust_mut(&mut self) -> &mut Trust;
    /// Takes the other's role when this one has none.
    fn fill_role(&mut self, _other: &Self) {}
}

/// Amounts and dates: a value, how it was printed, its line, its trust, and a role.
macro_rules! fact_with_role {
    ($t:ty, $key:ident) => {
        impl Fact for $t {
            fn key(&self) -> &str {
                &self.$key
            }
            fn printed(&self) -> &str {
                &self.text
            }
            fn line(&self) -> &str {
                &self.line
            }
            fn trust(&self) -> &Trust {
                &self.trust
            }
            fn trust_mut(&mut self) -> &mut Trust {
                &mut self.trust
            }
            fn fill_role(&mut self, other: &Self) {
                if self.role.is_none() && other.role.is_some() {
                    self.role.clone_from(&other.role);
                    self.role_evidence.clone_from(&other.role_evidence);
                }
            }
        }
    };
}

fact_with_role!(Amount, value);
fact_with_role!(Date, date);

impl Fact for Reference {
    fn key(&self) -> &str {
        &self.value
    }
    fn printed(&self) -> &str {
        &self.value
    }
    fn line(&self) -> &str {
        &self.line
    }
    fn trust(&self) -> &Trust {
        &self.trust
    }
    fn trust_mut(&mut self) -> &mut Trust {
        &mut self.trust
    }
}

/// How sure a reading was of a fact, for choosing between readings: unflagged first, then
/// the higher confidence.
fn sureness(t: &Trust) -> (bool, u8) {
    (!t.uncertain, t.confidence.unwrap_or(100))
}

/// Whether two lines are the same printed line read twice: with the facts' own text taken out,
/// at most half their letters and digits differ (OCR of a damaged line differs a lot).
fn same_line(a: &str, a_fact: &str, b: &str, b_fact: &str) -> bool {
    let norm = |line: &str, fact: &str| -> Vec<char> {
        line.replacen(fact, " ", 1)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (x, y) = (norm(a, a_fact), norm(b, b_fact));
    if x.len() < 3 || y.len() < 3 {
        // Too little besides the figure to tell lines apart ("£12.00" alone on a line).
        return x == y;
    }
    edits(&x, &y) * 2 <= x.len().max(y.len())
}

/// Levenshtein distance.
fn edits<T: PartialEq>(x: &[T], y: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=y.len()).collect();
    let mut cur = vec![0; y.len() + 1];
    for i in 1..=x.len() {
        cur[0] = i;
        for j in 1..=y.len() {
            let sub = prev[j - 1] + usize::from(x[i - 1] != y[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[y.len()]
}

/// Whether two values could be one print read two ways: one character apart (a digit
/// changed, lost or added), separators aside.
fn close(a: &str, b: &str) -> bool {
    let keep = |s: &str| -> Vec<char> { s.chars().filter(char::is_ascii_alphanumeric).collect() };
    edits(&keep(a), &keep(b)) <= 1
}

/// Where a value was seen in a reading: every place, not only its first (a fact keeps the
/// line it was first seen on).
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    printed: String,
    line: String,
}

/// Merges one field's facts from every reading, as the module explains. `seen` holds, per
/// reading, every place a value of this field was read.
fn merge<F: Fact>(per_reading: &[Vec<F>], seen: &[Vec<Seen>]) -> Vec<F> {
    let mut out: Vec<F> = Vec::new();
    // Values that lost a disagreement: named in the flagged fact's reason, not kept again.
    let mut settled: Vec<String> = Vec::new();
    for (r, facts) in per_reading.iter().enumerate() {
        for f in facts {
            if out.iter().any(|o| o.key() == f.key()) || settled.iter().any(|k| k == f.key()) {
                continue;
            }
            // The same value in every reading that has it: the surest instance, flagged only
            // when all are.
            let mut best = f.clone();
            for other in per_reading.iter().skip(r + 1).flatten() {
                if other.key() == f.key() {
                    if sureness(other.trust()) > sureness(best.trust()) {
                        let mut o = other.clone();
                        o.fill_role(&best);
                        best = o;
                    } else {
                        best.fill_role(other);
                    }
                }
            }
            // Another reading read this line with a value one character away: the page
            // reads two ways here.
            let rival = seen
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != r)
                .flat_map(|(i, places)| places.iter().map(move |p| (i, p)))
                .find(|(_, p)| {
                    p.key != f.key()
                        && close(&p.key, f.key())
                        && same_line(f.line(), f.printed(), &p.line, &p.printed)
                });
            if let Some((i, rival)) = rival {
                let (a, b) = (f.printed().to_owned(), rival.printed.clone());
                // Unless this reading also has the rival's value elsewhere, the two are one
                // figure: the loser is not kept on its own.
                let stands_alone = per_reading[r].iter().any(|o| o.key() == rival.key);
                // The rival's own fact, when its reading made one of it: the surer is kept.
                if let Some(theirs) = per_reading[i].iter().find(|o| o.key() == rival.key)
                    && sureness(theirs.trust()) > sureness(best.trust())
                {
                    if out.iter().any(|o| o.key() == theirs.key()) || stands_alone {
                        // That value stands on its own elsewhere; this one is a misreading of
                        // it, kept flagged so nothing is hidden.
                    } else {
                        best = theirs.clone();
                    }
                }
                if !stands_alone {
                    settled.push(rival.key.clone());
                    settled.push(f.key().to_owned());
                }
                let t = best.trust_mut();
                t.uncertain = true;
                let why = format!("the page reads two ways here: `{a}` or `{b}`");
                t.reason = Some(match t.reason.take() {
                    Some(r) => format!("{r}; {why}"),
                    None => why,
                });
            }
            // Found by one reading only, with several made: nothing confirms it, so it must be
            // surer than a fact the readings agree on.
            let confirmed = per_reading
                .iter()
                .enumerate()
                .any(|(i, fs)| i != r && fs.iter().any(|o| o.key() == best.key()));
            if per_reading.len() > 1
                && !confirmed
                && !best.trust().uncertain
                && let Some(c) = best.trust().confidence.filter(|c| *c < SOLE_READING_BELOW)
            {
                let t = best.trust_mut();
                t.uncertain = true;
                t.reason = Some(format!(
                    "only one reading of the page found `{}`, and OCR was {c} % sure of it",
                    f.printed()
                ));
            }
            if !out.iter().any(|o| o.key() == best.key()) {
                out.push(best);
            }
        }
    }
    out
}

fn seen_amounts(text: &str) -> Vec<Seen> {
    text.lines()
        .flat_map(|l| {
            amounts_in(l).into_iter().map(|(_, a)| Seen {
                key: a.value,
                printed: a.text,
                line: a.line,
            })
        })
        .collect()
}

fn seen_dates(text: &str) -> Vec<Seen> {
    text.lines()
        .flat_map(|l| {
            dates_in(l).into_iter().map(|(_, d)| Seen {
                key: d.date,
                printed: d.text,
                line: d.line,
            })
        })
        .collect()
}

fn seen_references(facts: &Facts) -> Vec<Seen> {
    facts
        .references
        .iter()
        .map(|r| Seen {
            key: r.value.clone(),
            printed: r.value.clone(),
            line: r.line.clone(),
        })
        .collect()
}

/// The facts of a page read several ways (the first reading is the main one).
pub(crate) fn extract_readings(readings: &[Reading]) -> Facts {
    let per: Vec<Facts> = readings
        .iter()
        .map(|r| {
            let mut f = extract(&r.text);
            apply_confidence(&mut f, &r.words);
            f
        })
        .collect();
    let Some(first) = per.first() else {
        return extract("");
    };
    if per.len() == 1 {
        return first.clone();
    }
    let all_text: String = readings
        .iter()
        .map(|r| r.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let (letter_type, letter_type_evidence) = classify(&all_text);
    // The sender from the reading whose words for it were surest.
    let sender = per
        .iter()
        .zip(readings)
        .filter_map(|(f, r)| f.sender.clone().map(|s| (s, r)))
        .max_by_key(|(s, r)| least_confidence(&s.name, &r.words))
        .map(|(s, _)| s);
    let mut facts = Facts {
        letter_type: letter_type.to_owned(),
        letter_type_evidence,
        sender,
        original_creditor: per.iter().find_map(|f| f.original_creditor.clone()),
        amounts: merge(
            &per.iter().map(|f| f.amounts.clone()).collect::<Vec<_>>(),
            &readings
                .iter()
                .map(|r| seen_amounts(&r.text))
                .collect::<Vec<_>>(),
        ),
        dates: merge(
            &per.iter().map(|f| f.dates.clone()).collect::<Vec<_>>(),
            &readings
                .iter()
                .map(|r| seen_dates(&r.text))
                .collect::<Vec<_>>(),
        ),
        references: merge(
            &per.iter().map(|f| f.references.clone()).collect::<Vec<_>>(),
            &per.iter().map(seen_references).collect::<Vec<_>>(),
        ),
        sort_codes: first.sort_codes.clone(),
        national_insurance_numbers: first.national_insurance_numbers.clone(),
        warning: None,
    };
    for f in &per[1..] {
        for s in &f.sort_codes {
            if !facts.sort_codes.contains(s) {
                facts.sort_codes.push(s.clone());
            }
        }
        for n in &f.national_insurance_numbers {
            if !facts.national_insurance_numbers.contains(n) {
                facts.national_insurance_numbers.push(n.clone());
            }
        }
    }
    // Warned only when no reading found any text.
    if per.iter().all(|f| f.warning.is_some()) {
        facts.warning.clone_from(&first.warning);
    }
    facts
}

/// The lowest confidence of `text`'s words among `words` (100 when not read by OCR).
fn least_confidence(text: &str, words: &[Word]) -> u8 {
    if words.is_empty() {
        return 100;
    }
    text.split_whitespace()
        .map(|t| {
            words
                .iter()
                .filter(|w| w.text.trim_end_matches(['.', ',', ':', ';']) == t)
                .map(|w| w.confidence.clamp(0.0, 100.0) as u8)
                .max()
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(text: &str, confident: &[(&str, f32)]) -> Reading {
        Reading {
            text: text.to_owned(),
            words: text
                .split_whitespace()
                .map(|w| Word {
                    text: w.to_owned(),
                    confidence: confident
                        .iter()
                        .find(|(t, _)| *t == w)
                        .map_or(95.0, |(_, c)| *c),
                    x: 0,
                    y: 0,
                    w: 1,
                    h: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn agreement_keeps_the_surest_reading() {
        let a = reading(
            "The amount now outstanding is £1,482.37",
            &[("£1,482.37", 40.0)],
        );
        let b = reading("The amount now outstandinq is £1,482.37", &[]);
        let f = extract_readings(&[a, b]);
        assert_eq!(f.amounts.len(), 1);
        assert_eq!(f.amounts[0].value, "1482.37");
        assert!(!f.amounts[0].trust.uncertain, "{:?}", f.amounts[0].trust);
        assert_eq!(f.amounts[0].role.as_deref(), Some("balance"));
    }

    #[test]
    fn a_disagreement_is_flagged_naming_both() {
        let a = reading("The amount now outstanding is £1,482.37", &[]);
        let b = reading(
            "The amount now outstanding is £1,482.87",
            &[("£1,482.87", 80.0)],
        );
        let f = extract_readings(&[a, b]);
        assert_eq!(f.amounts.len(), 1, "{:?}", f.amounts);
        let t = &f.amounts[0].trust;
        assert!(t.uncertain);
        let why = t.reason.as_deref().unwrap_or_default();
        assert!(
            why.contains("£1,482.37") && why.contains("£1,482.87"),
            "{why}"
        );
        // The surer reading's value is the one kept.
        assert_eq!(f.amounts[0].value, "1482.37");
    }

    #[test]
    fn a_misreading_of_a_value_seen_elsewhere_is_flagged() {
        let a = reading(
            "The amount now outstanding is £1,243.90.\nAmount due: £1,243.96",
            &[],
        );
        let b = reading(
            "The amount now outstanding is £1,243.90.\nAmount due: £1,243.90",
            &[],
        );
        let f = extract_readings(&[a, b]);
        let of = |v: &str| {
            f.amounts
                .iter()
                .find(|x| x.value == v)
                .map(|x| x.trust.uncertain)
        };
        assert_eq!(of("1243.90"), Some(false), "{:?}", f.amounts);
        assert_eq!(of("1243.96"), Some(true), "{:?}", f.amounts);
    }

    #[test]
    fn rows_of_a_table_are_not_rivals() {
        let a = reading(
            "3 May 2025 Payment received £5.94\n3rd June 2025 Payment received £80.54",
            &[],
        );
        let f = extract_readings(&[a.clone(), a]);
        assert_eq!(f.amounts.len(), 2);
        assert!(
            f.amounts.iter().all(|x| !x.trust.uncertain),
            "{:?}",
            f.amounts
        );
    }

    #[test]
    fn a_fact_only_one_reading_found_needs_to_be_surer() {
        let a = reading("Issue date: 3 May 2026", &[("3", 88.0)]);
        let b = reading("something else entirely", &[]);
        let f = extract_readings(&[a, b]);
        assert!(f.dates[0].trust.uncertain, "{:?}", f.dates[0]);
        assert!(
            f.dates[0]
                .trust
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("only one reading"),
            "{:?}",
            f.dates[0]
        );
    }

    #[test]
    fn a_fact_only_one_reading_found_is_kept_as_judged() {
        let a = reading("Court costs of £85.50 may be added.", &[]);
        let b = reading("Court costs of 85 5O may be added.", &[]);
        let f = extract_readings(&[a, b]);
        assert_eq!(f.amounts.len(), 1);
        assert!(!f.amounts[0].trust.uncertain);
    }

    #[test]
    fn one_reading_is_plain_extraction() {
        let a = reading("Pay £12.00 by 3 May 2026", &[]);
        let one = extract_readings(std::slice::from_ref(&a));
        let mut plain = extract(&a.text);
        apply_confidence(&mut plain, &a.words);
        assert_eq!(one, plain);
        assert!(extract_readings(&[]).amounts.is_empty());
    }
}

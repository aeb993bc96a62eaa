//! `extract`: facts from UK debt-advice letters. Text in (or a document, read first through
//! `pdf-text` / `ocr` on this worker); JSON out: money amounts, dates, reference and account
//! numbers, sort codes, National Insurance numbers, the sender (creditor) and the letter type
//! with the evidence for it. Rule-based: every fact carries the line it came from, so an adviser
//! can check it.

use std::sync::LazyLock;

use regex::Regex;

use crate::agree::{Reading, extract_readings};
use crate::media::{self, Kind};
use crate::ocr::{Ocr, OcrOptions};
use crate::pdf_text::PdfText;
use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest};

/// Most text `extract` reads (2 MB).
pub(crate) const MAX_TEXT_BYTES: usize = 2 * 1024 * 1024;

pub(crate) use rma_proto::results::{Amount, Date, Facts, Reference, Sender, Trust};
use rma_proto::results::{ExtractResult, TextSource, Word};

fn re(pattern: &str) -> Regex {
    // The patterns are literals in this file; a bad one is a bug caught by the tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad built-in pattern {pattern}: {e}"))
}

static GBP_AFTER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b((?:\d{1,3}(?:,\d{3})+|\d+)\.\d{2})\s?GBP\b"));
static GBP_BEFORE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\bGBP\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{2})?)\b"));
/// Pounds as they should be printed: thousands with commas or none, pence after a point.
static WELL_FORMED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{2})?$"));
/// A comma where the decimal point belongs: "1,482,37".
static COMMA_PENCE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^((?:\d{1,3}(?:,\d{3})*|\d+)),(\d{2})$"));

/// Thousands groups and pence after spaces, after the first digits of a figure: " 347 69".
static SPACED_GROUPS: LazyLock<Regex> =
    LazyLock::new(|| re(r"^((?: \d{3})+)[ .,](\d{2})(?:[^0-9A-Za-z]|$)"));
/// Pence after a point or comma and a space: ". 78".
static POINT_GAP: LazyLock<Regex> = LazyLock::new(|| re(r"^[.,] (\d{2})(?:[^0-9A-Za-z]|$)"));

/// A letter OCR often reads in place of a digit, and the digit.
fn digit_for(c: char) -> Option<char> {
    match c {
        'O' | 'o' | 'D' | 'Q' => Some('0'),
        'I' | 'l' | '|' | 'i' => Some('1'),
        'S' | 's' => Some('5'),
        'B' => Some('8'),
        'Z' | 'z' => Some('2'),
        _ => None,
    }
}

/// Money amounts in a line: each `£` figure, read so that it is either right or flagged. OCR
/// loses decimal points (`£1,482 37`), reads them as commas (`£1,482,37`) and reads digits as
/// letters (`£1,4O2.37`); each of these is read as the amount it most likely is, with
/// `uncertain` set and the reason. "£1.2k" and "£3m" are not amounts: an adviser needs pounds
/// and pence.
pub(crate) fn amounts_in(line: &str) -> Vec<(usize, Amount)> {
    let mut out = Vec::new();
    for (at, _) in line.match_indices('£') {
        if let Some(a) = pounds_at(line, at) {
            out.push(a);
        }
    }
    for r in [&*GBP_AFTER, &*GBP_BEFORE] {
        for c in r.captures_iter(line) {
            let (Some(all), Some(num)) = (c.get(0), c.get(1)) else {
                continue;
            };
            out.push((all.start(), amount(num.as_str(), false, all.as_str(), line)));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The amount whose `£` is at byte `at` of `line`, if one follows it.
fn pounds_at(line: &str, at: usize) -> Option<(usize, Amount)> {
    let negative = line[..at].ends_with('-');
    let start = if negative { at - 1 } else { at };
    let after = &line[at + '£'.len_utf8()..];
    let lead = after.len() - after.trim_start_matches(' ').len();
    if lead > 1 {
        return None;
    }
    let body = &after[lead..];
    // The figure: digits, separators, and letters OCR may have put for digits.
    let mut end = 0;
    for (i, c) in body.char_indices() {
        if c.is_ascii_digit() || c == ',' || c == '.' || digit_for(c).is_some() {
            end = i + c.len_utf8();
        } else {
            break;
        }
    }
    // Sentence punctuation after a figure is not part of it.
    let raw = body[..end].trim_end_matches([',', '.']);
    if !raw.starts_with(|c: char| c.is_ascii_digit() || digit_for(c).is_some()) {
        return None;
    }
    if !raw.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let rest = &body[raw.len()..];
    // A letter straight after (k, m, bn, p) makes it not money.
    if rest.starts_with(char::is_alphanumeric) {
        return None;
    }
    let mut reasons = Vec::new();
    let digits: String = raw.chars().map(|c| digit_for(c).unwrap_or(c)).collect();
    let mut printed = format!("£{}", &after[..lead + raw.len()]);
    if digits != raw {
        reasons.push(format!(
            "letters read as digits in `{printed}`, read as £{digits}"
        ));
    }
    // Pence after a space where the point should be: "£1,482 37".
    let mut pence_gap = None;
    if !digits.contains('.') {
        let b = rest.as_bytes();
        if b.len() >= 3
            && matches!(b[0], b' ' | b';' | b':')
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && !b.get(3).is_some_and(|c| c.is_ascii_alphanumeric())
        {
            pence_gap = Some(std::str::from_utf8(&b[1..3]).unwrap_or("00").to_owned());
        }
    }
    // Thousands and pence after spaces: "£2 347 69" for £2,347.69.
    let mut spaced = None;
    if pence_gap.is_none() && !digits.contains(['.', ',']) && digits.len() <= 3 {
        spaced = SPACED_GROUPS.captures(rest).and_then(|c| {
            let groups: String = c.get(1)?.as_str().split_whitespace().collect();
            Some((
                groups,
                c.get(2)?.as_str().to_owned(),
                c.get(0)?.as_str().to_owned(),
            ))
        });
    }
    // Pence after a point and a space: "£88. 78".
    let mut point_gap = None;
    if pence_gap.is_none() && spaced.is_none() && !digits.contains('.') {
        point_gap = POINT_GAP
            .captures(rest)
            .and_then(|c| Some((c.get(1)?.as_str().to_owned(), c.get(0)?.as_str().to_owned())));
    }
    let value = if let Some((groups, p, seen)) = &spaced {
        printed.push_str(seen);
        reasons.push(format!(
            "the figure may be misread: `{printed}` has spaces where the comma and the decimal point should be"
        ));
        format!("{digits}{groups}.{p}")
    } else if let Some((p, seen)) = &point_gap {
        printed.push_str(seen);
        reasons.push(format!(
            "the pence may be misread: `{printed}` has a space after the decimal point"
        ));
        format!("{digits}.{p}")
    } else if let Some(p) = &pence_gap {
        // The separator is one ASCII byte (checked above).
        printed.push_str(rest.get(..1).unwrap_or(" "));
        printed.push_str(p);
        let sep = if rest.starts_with(' ') {
            "a space"
        } else {
            "a mark"
        };
        reasons.push(format!(
            "the pence may be misread: `{printed}` has {sep} where the decimal point should be"
        ));
        format!("{digits}.{p}")
    } else if let Some(c) = COMMA_PENCE.captures(&digits) {
        let (p, d) = (c.get(1)?.as_str(), c.get(2)?.as_str());
        reasons.push(format!(
            "the pence may be misread: `{printed}` has a comma where the decimal point should be"
        ));
        format!("{p}.{d}")
    } else if WELL_FORMED.is_match(&digits) {
        digits.clone()
    } else if digits.rsplit('.').next().is_some_and(|d| d.len() == 1)
        && digits.matches('.').count() == 1
    {
        // "£12.5" is not how money is printed; not an amount.
        return None;
    } else {
        // Separators in odd places ("1.482.37", "14,82"): the digits are kept and flagged.
        let (whole, pence) = match digits.rfind(['.', ',']) {
            Some(i) if digits.len() - i == 3 => (&digits[..i], &digits[i + 1..]),
            _ => (digits.as_str(), "00"),
        };
        let whole: String = whole.chars().filter(char::is_ascii_digit).collect();
        reasons.push(format!(
            "the figure `{printed}` is not printed as money usually is; check it"
        ));
        format!("{whole}.{pence}")
    };
    // A whole-pound figure with something other than a space or sentence punctuation straight
    // after it ("£1673?", "£135@.25"), or a digit after a space ("£169 3°"): its pence, or its
    // end, may be lost.
    if !value.contains('.') {
        let next = rest.chars().next();
        let junk = next.is_some_and(|c| !c.is_whitespace() && !".,;:)!'\"".contains(c));
        // One or two digits after a space are pence-like ("£169 3°"), three a thousands group
        // ("£5 339°"); a year is not.
        let run = rest
            .strip_prefix(' ')
            .map_or(0, |r| r.chars().take_while(char::is_ascii_digit).count());
        let digit_after = (1..=3).contains(&run);
        if junk || digit_after {
            let tail: String = rest.chars().take(4).collect();
            reasons.push(format!(
                "the figure may be cut short: `{printed}` is followed by `{}`",
                tail.trim_end()
            ));
        }
    }
    // A £ joined to the word before it may be a misread letter ("DE22" read as "O£22").
    if line[..start].ends_with(|c: char| c.is_alphanumeric()) {
        reasons.push(format!(
            "the £ in `{printed}` is joined to the word before it and may be a misread letter"
        ));
    }
    let mut a = amount(&value, negative, &printed, line);
    if !reasons.is_empty() {
        a.trust = Trust::unsure(reasons.join("; "));
    }
    Some((start, a))
}

fn amount(num: &str, negative: bool, text: &str, line: &str) -> Amount {
    let plain = num.replace(',', "");
    let value = match plain.split_once('.') {
        Some((p, d)) => format!("{p}.{d:0<2}"),
        None => format!("{plain}.00"),
    };
    Amount {
        value: if negative { format!("-{value}") } else { value },
        text: text.trim().to_owned(),
        currency: "GBP".into(),
        line: line.trim().to_owned(),
        role: None,
        role_evidence: None,
        trust: Trust::default(),
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

static DATE_NUMERIC: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})\b"));
/// A numeric date where OCR may have put letters for digits.
static DATE_NUMERIC_SMUDGED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b([0-9OoDQIl|SsBZz]{1,2})[/.\-]([0-9OoDQIl|SsBZz]{1,2})[/.\-]([0-9OoDQIl|SsBZz]{4}|[0-9OoDQIl|SsBZz]{2})\b",
    )
});
static DATE_DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?,?\s+(?P<y>\d{4})\b",
    )
});
static DATE_MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?P<m>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b",
    )
});

fn days_in(month: u32, year: i32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn iso(day: u32, month: u32, year: i32) -> Option<String> {
    ((1..=12).contains(&month)
        && (1900..=2200).contains(&year)
        && day >= 1
        && day <= days_in(month, year))
    .then(|| format!("{year:04}-{month:02}-{day:02}"))
}

fn month_of(name: &str) -> Option<u32> {
    let l = name.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| l.starts_with(m))
        .map(|i| i as u32 + 1)
}

/// Dates in a line: UK day-first numbers (`03/02/2026` is 3 February), written-out months
/// (`9th May 2026`, `14 Mar 2026`, `March 14, 2026`). Impossible dates are ignored.
pub(crate) fn dates_in(line: &str) -> Vec<(usize, Date)> {
    let mut out = Vec::new();
    let mut push = |at: usize, text: &str, d: Option<String>| {
        if let Some(date) = d {
            out.push((
                at,
                Date {
                    date,
                    text: text.to_owned(),
                    line: line.trim().to_owned(),
                    role: None,
                    role_evidence: None,
                    trust: Trust::default(),
                },
            ));
        }
    };
    for c in DATE_NUMERIC.captures_iter(line) {
        let (Some(all), Some(d), Some(m), Some(y)) = (c.get(0), c.get(1), c.get(2), c.get(3))
        else {
            continue;
        };
        let year: i32 = match y.as_str().parse::<i32>() {
            Ok(v) if y.as_str().len() == 2 => 2000 + v,
            Ok(v) => v,
            Err(_) => continue,
        };
        let (Ok(day), Ok(month)) = (d.as_str().parse(), m.as_str().parse()) else {
            continue;
        };
        push(all.start(), all.as_str(), iso(day, month, year));
    }
    // Written-out months, day first or month first: the patterns name their groups alike.
    for pattern in [&*DATE_DAY_MONTH, &*DATE_MONTH_DAY] {
        for c in pattern.captures_iter(line) {
            let (Some(all), Some(d), Some(m), Some(y)) =
                (c.get(0), c.name("d"), c.name("m"), c.name("y"))
            else {
                continue;
            };
            let (Ok(day), Some(month), Ok(year)) =
                (d.as_str().parse(), month_of(m.as_str()), y.as_str().parse())
            else {
                continue;
            };
            push(all.start(), all.as_str(), iso(day, month, year));
        }
    }
    // Numeric dates with a digit read as a letter ("12/0l/2026"): read with the digits they
    // stand for, and flagged.
    let mut found: Vec<usize> = out.iter().map(|(at, _)| *at).collect();
    for c in DATE_NUMERIC_SMUDGED.captures_iter(line) {
        let Some(all) = c.get(0) else { continue };
        let printed = all.as_str();
        if found.contains(&all.start()) || !printed.chars().any(|ch| ch.is_ascii_alphabetic()) {
            continue;
        }
        let digits: String = printed
            .chars()
            .map(|ch| digit_for(ch).unwrap_or(ch))
            .collect();
        if let Some((_, mut d)) = dates_in(&digits).into_iter().next() {
            d.text = printed.to_owned();
            d.line = line.trim().to_owned();
            d.trust = Trust::unsure(format!(
                "letters read as digits in `{printed}`, read as {digits}"
            ));
            found.push(all.start());
            out.push((all.start(), d));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b((?:our|your|customer|payment|lowell|account|agreement|policy|claim|case|invoice|membership|client)\s+(?:reference|ref\.?|number|no\.?)|account\s+(?:reference|ref\.?)|customer\s+account|reference(?:\s+number)?|ref\.?|account)\b\s*(?:number|no\.?)?\s*[:#]?\s*([A-Z0-9][A-Z0-9/\-]{3,24})\b",
    )
});
static SORT_CODE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)sort\s*code[:\s]*(\d{2})[\s-](\d{2})[\s-](\d{2})\b"));
static NINO: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?(\d{2})\s?(\d{2})\s?(\d{2})\s?([A-D])\b")
});
static ORIGINAL_CREDITOR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)original\s+creditor\s*[:\-]?\s*(.+)$"));
static CLAIMANT: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\s*claimant\s*[:\-]\s*(.+)$"));
static ORG_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(ltd|limited|plc|llp|council|bank|building society|energy|water|department|hmrc|revenue|services|finance|financial|group|solicitors|court|agency)\b",
    )
});

/// Organisations seen on debt-advice letters, for finding the sender in the text.
const KNOWN_SENDERS: [&str; 46] = [
    "Department for Work and Pensions",
    "DWP",
    "HM Revenue & Customs",
    "HMRC",
    "Barclays",
    "HSBC",
    "Lloyds",
    "NatWest",
    "Santander",
    "Nationwide",
    "Halifax",
    "Monzo",
    "Starling",
    "TSB",
    "Virgin Money",
    "Lowell",
    "Cabot",
    "Intrum",
    "PRA Group",
    "Moorcroft",
    "Arrow Global",
    "Link Financial",
    "Hoist",
    "Capquest",
    "Wescot",
    "BW Legal",
    "Overdales",
    "British Gas",
    "Octopus Energy",
    "EDF",
    "E.ON",
    "OVO",
    "Scottish Power",
    "Thames Water",
    "Severn Trent",
    "Yorkshire Water",
    "United Utilities",
    "Vanquis",
    "Capital One",
    "Very",
    "Littlewoods",
    "Klarna",
    "Vodafone",
    "Virgin Media",
    "Sky",
    "BT",
];

const DEBT_COLLECTORS: [&str; 11] = [
    "lowell",
    "cabot",
    "intrum",
    "pra group",
    "moorcroft",
    "arrow global",
    "link financial",
    "hoist",
    "capquest",
    "wescot",
    "bw legal",
];
const UTILITIES: [&str; 12] = [
    "british gas",
    "octopus energy",
    "edf",
    "e.on",
    "ovo",
    "scottish power",
    "thames water",
    "severn trent",
    "yorkshire water",
    "united utilities",
    "anglian water",
    "southern water",
];

/// (type, phrase, weight). Phrases are matched case-insensitively on word boundaries.
const TYPE_RULES: &[(&str, &str, u32)] = &[
    ("council_tax", "council tax", 4),
    ("council_tax", "liability order", 2),
    ("council_tax", "magistrates", 1),
    ("council_tax", "instalment", 1),
    ("council_tax", "instalments", 1),
    ("council_tax", "city council", 2),
    ("council_tax", "borough council", 2),
    ("council_tax", "district council", 2),
    ("council_tax", "council", 1),
    ("universal_credit", "universal credit", 4),
    ("universal_credit", "department for work and pensions", 2),
    ("universal_credit", "dwp", 2),
    ("universal_credit", "mandatory reconsideration", 2),
    ("universal_credit", "jobcentre", 1),
    ("universal_credit", "overpayment", 1),
    ("bank_statement", "statement of account", 4),
    ("bank_statement", "balance brought forward", 2),
    ("bank_statement", "balance carried forward", 2),
    ("bank_statement", "statement date", 1),
    ("bank_statement", "paid out", 1),
    ("bank_statement", "paid in", 1),
    ("bank_statement", "overdraft", 1),
    ("debt_collection", "notice of assignment", 4),
    ("debt_collection", "debt collection", 2),
    ("debt_collection", "debt collector", 2),
    ("debt_collection", "has been sold", 2),
    ("debt_collection", "outstanding balance", 1),
    ("debt_collection", "original creditor", 2),
    ("county_court", "county court", 4),
    ("county_court", "claim form", 3),
    ("county_court", "ccj", 2),
    ("county_court", "judgment", 2),
    ("county_court", "claimant", 1),
    ("county_court", "defendant", 1),
    ("county_court", "money claim", 2),
    ("default_notice", "default notice", 5),
    ("default_notice", "consumer credit act", 3),
    ("default_notice", "section 87", 3),
    ("default_notice", "remedy the breach", 3),
    ("enforcement_agent", "enforcement agent", 4),
    ("enforcement_agent", "notice of enforcement", 5),
    ("enforcement_agent", "bailiff", 3),
    ("enforcement_agent", "bailiffs", 3),
    ("enforcement_agent", "taking control of goods", 4),
    ("enforcement_agent", "compliance stage", 2),
    ("enforcement_agent", "enforcement stage", 2),
    ("hmrc", "hm revenue", 5),
    ("hmrc", "hmrc", 5),
    ("hmrc", "tax credits", 3),
    ("hmrc", "self assessment", 2),
    ("water", "water bill", 3),
    ("water", "water services", 3),
    ("water", "sewerage", 3),
    ("water", "wastewater", 2),
    ("rent_arrears", "rent arrears", 4),
    ("rent_arrears", "notice seeking possession", 5),
    ("rent_arrears", "housing act 1988", 3),
    ("rent_arrears", "section 21", 3),
    ("rent_arrears", "tenancy", 2),
    ("rent_arrears", "landlord", 1),
    ("credit_arrears", "credit card", 2),
    ("credit_arrears", "credit card account", 2),
    ("credit_arrears", "missed payments", 2),
    ("credit_arrears", "minimum payment", 2),
    ("credit_arrears", "loan agreement", 2),
    ("credit_arrears", "arrears on your account", 3),
    ("bnpl", "buy now pay later", 5),
    ("bnpl", "klarna", 5),
    ("bnpl", "clearpay", 5),
    ("bnpl", "laybuy", 5),
    ("bnpl", "pay in 3", 3),
    ("parking_charge", "parking charge notice", 6),
    ("parking_charge", "parking charge", 4),
    ("parking_charge", "penalty charge notice", 6),
    ("parking_charge", "registered keeper", 3),
    ("parking_charge", "pcn", 3),
    ("utility", "prepayment meter", 3),
    ("utility", "electricity", 2),
    ("utility", "gas", 1),
    ("utility", "energy", 1),
    ("utility", "meter", 1),
];

fn contains_word(haystack_lower: &str, needle: &str) -> bool {
    find_word(haystack_lower, needle).is_some()
}

/// Classifies a letter; returns its type and the phrases that decided it.
pub(crate) fn classify(text: &str) -> (&'static str, Vec<String>) {
    let lower = text.to_lowercase();
    let mut scores: Vec<(&'static str, u32, Vec<String>)> = Vec::new();
    let mut add = |kind: &'static str, phrase: &str, w: u32| match scores
        .iter_mut()
        .find(|(k, _, _)| *k == kind)
    {
        Some(e) => {
            e.1 += w;
            e.2.push(phrase.to_owned());
        }
        None => scores.push((kind, w, vec![phrase.to_owned()])),
    };
    for (kind, phrase, w) in TYPE_RULES {
        if contains_word(&lower, phrase) {
            add(kind, phrase, *w);
        }
    }
    for name in DEBT_COLLECTORS {
        if contains_word(&lower, name) {
            add("debt_collection", name, 2);
        }
    }
    for name in UTILITIES {
        if contains_word(&lower, name) {
            // Water companies are named "… water" (and two others).
            let kind =
                if name.contains("water") || matches!(name, "severn trent" | "united utilities") {
                    "water"
                } else {
                    "utility"
                };
            add(kind, name, 3);
        }
    }
    scores.sort_by_key(|s| std::cmp::Reverse(s.1));
    match scores.into_iter().next() {
        Some((kind, score, evidence)) if score >= 3 => (kind, evidence),
        _ => ("other", Vec::new()),
    }
}

fn sender(lines: &[&str]) -> Option<Sender> {
    for l in lines {
        if let Some(c) = CLAIMANT.captures(l)
            && let Some(name) = c.get(1)
        {
            return Some(Sender {
                name: name.as_str().trim().to_owned(),
                evidence: format!("claimant: {}", l.trim()),
            });
        }
    }
    // The letterhead: the first line that reads like an organisation or names a known one
    // ("Halifax" above "Card Services, Leeds").
    for l in lines.iter().take(4) {
        let t = l.trim();
        let lower = t.to_lowercase();
        if !t.is_empty()
            && t.len() <= 80
            && (ORG_SUFFIX.is_match(t)
                || KNOWN_SENDERS
                    .iter()
                    .any(|k| contains_word(&lower, &k.to_lowercase())))
            && !t.to_lowercase().starts_with("in the ")
            && amounts_in(t).is_empty()
        {
            return Some(Sender {
                name: t.to_owned(),
                evidence: "letterhead".to_owned(),
            });
        }
    }
    let text = lines.join("\n");
    let lower = text.to_lowercase();
    KNOWN_SENDERS
        .iter()
        .filter_map(|name| {
            let l = name.to_lowercase();
            lower
                .find(&l)
                .filter(|_| contains_word(&lower, &l))
                .map(|at| (at, *name))
        })
        .min_by_key(|(at, _)| *at)
        .map(|(_, name)| Sender {
            name: name.to_owned(),
            evidence: "named in the letter".to_owned(),
        })
}

/// Extracts every fact from a letter's text.
/// Words that say what an amount is, by role. The nearest before the amount on its line
/// decides; failing that, the nearest after it.
const AMOUNT_ROLES: &[(&str, &[&str])] = &[
    ("minimum_payment", &["minimum payment"]),
    (
        "overpayment",
        &[
            "overpayment",
            "overpaid",
            "more universal credit",
            "paid more",
        ],
    ),
    (
        "arrears",
        &[
            "arrears", "overdue", "missed", "behind", "not paid", "unpaid",
        ],
    ),
    (
        "instalment",
        &[
            "instalment",
            "installment",
            "per month",
            "a month",
            "each month",
            "monthly",
            "per week",
            "weekly",
            "from each",
        ],
    ),
    (
        "costs",
        &[
            "court fee",
            "costs",
            "fee",
            "fees",
            "charge",
            "charges",
            "interest",
            "enforcement",
        ],
    ),
    (
        "offer",
        &["offer", "settle", "settlement", "discount", "reduced"],
    ),
    (
        "balance",
        &[
            "balance",
            "outstanding",
            "total amount",
            "total due",
            "amount due",
            "amount owed",
            "you owe",
            "sum of",
            "total of",
            "full amount",
            "owed",
            "amount claimed",
            "claimed",
        ],
    ),
    (
        "payment",
        &["payment received", "you paid", "paid in", "received"],
    ),
];

/// Words that say what a date is, by role.
const DATE_ROLES: &[(&str, &[&str])] = &[
    (
        "hearing",
        &["hearing", "attend court", "court on", "heard on"],
    ),
    (
        "deadline",
        &[
            "pay by",
            "paid by",
            "by",
            "before",
            "within",
            "no later than",
            "deadline",
            "contact us by",
            "respond by",
            "until",
        ],
    ),
    ("due", &["due on", "due", "starting from", "from"]),
    (
        "letter_date",
        &[
            "date of letter",
            "letter date",
            "issue date",
            "statement date",
            "date:",
            "dated",
        ],
    ),
    ("period", &["between", "period", "to"]),
];

/// How far after a figure (bytes, the figure included) its words are read first.
const AFTER_WINDOW: usize = 24;

/// The role the words nearest to byte `at` of `line` give, and those words.
fn role_at(
    line: &str,
    at: usize,
    table: &[(&'static str, &[&str])],
    after_first: bool,
) -> Option<(&'static str, String)> {
    let lower = line.to_lowercase();
    // Lower-casing keeps ASCII offsets; past a multi-byte change, fall back to the whole line.
    let at = if lower.len() == line.len() && lower.is_char_boundary(at) {
        at
    } else {
        lower.len()
    };
    let before = &lower[..at.min(lower.len())];
    let after = &lower[at.min(lower.len())..];
    let mut best: Option<(usize, &'static str, &str)> = None;
    // For amounts, words right after the figure say most ("£75.32 from each payment", "£25 a
    // month").
    let mut end = if after_first {
        after.len().min(AFTER_WINDOW)
    } else {
        0
    };
    while !after.is_char_boundary(end) {
        end -= 1;
    }
    let right_after = &after[..end];
    for (role, words) in table {
        for w in *words {
            if let Some(i) = find_word(right_after, w)
                && best.is_none_or(|(d, _, _)| i < d)
            {
                best = Some((i, role, w));
            }
        }
    }
    if let Some((_, role, w)) = best {
        return Some((role, w.to_owned()));
    }
    for (role, words) in table {
        for w in *words {
            // The last whole-word occurrence before the fact: the distance decides.
            if let Some(i) = rfind_word(before, w) {
                let distance = before.len() - i;
                if best.is_none_or(|(d, _, _)| distance < d) {
                    best = Some((distance, role, w));
                }
            }
        }
    }
    if best.is_none() {
        for (role, words) in table {
            for w in *words {
                if let Some(i) = find_word(after, w)
                    && best.is_none_or(|(d, _, _)| i < d)
                {
                    best = Some((i, role, w));
                }
            }
        }
    }
    best.map(|(_, role, w)| (role, w.to_owned()))
}

/// Whether `word` stands at byte `i` of `hay` as a whole word (or phrase).
fn whole_word_at(hay: &str, i: usize, word: &str) -> bool {
    let starts = hay[..i].chars().last().is_none_or(|c| !c.is_alphanumeric());
    let ends = word.ends_with(':') || !hay[i + word.len()..].starts_with(char::is_alphanumeric);
    starts && ends
}

fn find_word(hay: &str, word: &str) -> Option<usize> {
    hay.match_indices(word)
        .map(|(i, _)| i)
        .find(|&i| whole_word_at(hay, i, word))
}

fn rfind_word(hay: &str, word: &str) -> Option<usize> {
    hay.rmatch_indices(word)
        .map(|(i, _)| i)
        .find(|&i| whole_word_at(hay, i, word))
}

pub(crate) fn extract(text: &str) -> Facts {
    let lines: Vec<&str> = text.lines().collect();
    let mut amounts: Vec<Amount> = Vec::new();
    let mut dates: Vec<Date> = Vec::new();
    let mut references: Vec<Reference> = Vec::new();
    let mut sort_codes: Vec<String> = Vec::new();
    let mut ninos: Vec<String> = Vec::new();
    let mut original_creditor = None;
    for (index, line) in lines.iter().enumerate() {
        let mut sort_spans = Vec::new();
        for c in SORT_CODE.captures_iter(line) {
            if let (Some(a), Some(b), Some(d), Some(all)) = (c.get(1), c.get(2), c.get(3), c.get(0))
            {
                let code = format!("{}-{}-{}", a.as_str(), b.as_str(), d.as_str());
                sort_spans.push(all.range());
                if !sort_codes.contains(&code) {
                    sort_codes.push(code);
                }
            }
        }
        for (at, mut a) in amounts_in(line) {
            if !amounts.iter().any(|x| x.value == a.value) {
                if let Some((role, words)) = role_at(line, at, AMOUNT_ROLES, true) {
                    a.role = Some(role.to_owned());
                    a.role_evidence = Some(words);
                }
                amounts.push(a);
            }
        }
        for (at, mut d) in dates_in(line) {
            if sort_spans.iter().any(|s| s.contains(&at)) {
                continue;
            }
            if !dates.iter().any(|x| x.date == d.date) {
                if let Some((role, words)) = role_at(line, at, DATE_ROLES, false) {
                    d.role = Some(role.to_owned());
                    d.role_evidence = Some(words);
                } else if index < 12 && dates.is_empty() && line.trim().len() <= d.text.len() + 16 {
                    // A date on a line of its own at the head of the letter is its date.
                    d.role = Some("letter_date".to_owned());
                    d.role_evidence = Some(line.trim().to_owned());
                }
                dates.push(d);
            }
        }
        for c in NINO.captures_iter(line) {
            let n: String = (1..=5)
                .filter_map(|i| c.get(i))
                .map(|m| m.as_str())
                .collect();
            if !ninos.contains(&n) {
                ninos.push(n);
            }
        }
        for c in REFERENCE.captures_iter(line) {
            let (Some(label), Some(value)) = (c.get(1), c.get(2)) else {
                continue;
            };
            let v = value.as_str().trim_end_matches(['-', '/']);
            let in_sort_code = sort_spans.iter().any(|s| s.contains(&value.start()));
            if v.chars().any(|ch| ch.is_ascii_digit())
                && !in_sort_code
                && !dates_in(v).iter().any(|_| true)
                && !references.iter().any(|r| r.value == v)
            {
                references.push(Reference {
                    value: v.to_owned(),
                    label: label.as_str().trim().to_owned(),
                    line: line.trim().to_owned(),
                    trust: Trust::default(),
                });
            }
        }
        if original_creditor.is_none()
            && let Some(c) = ORIGINAL_CREDITOR.captures(line)
            && let Some(m) = c.get(1)
        {
            original_creditor = Some(m.as_str().trim().to_owned());
        }
    }
    flag_unlikely_years(&mut dates, this_year());
    let (letter_type, letter_type_evidence) = classify(text);
    Facts {
        letter_type: letter_type.to_owned(),
        letter_type_evidence,
        sender: sender(&lines),
        original_creditor,
        amounts,
        dates,
        references,
        sort_codes,
        national_insurance_numbers: ninos,
        warning: (!text.chars().any(char::is_alphanumeric)).then(|| {
            "no text was found: the page may be blank, upside down, or too dark or blurred to read; nothing was extracted"
                .to_owned()
        }),
    }
}

/// The current year (UTC), for judging whether a date's year is plausible.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days to a civil year (good for 1970–2399; the leap-year drift is under a day a century).
    1970 + (secs as f64 / (365.2425 * 86_400.0)) as i32
}

/// Flags dates whose year is far from `year`: a letter about a debt speaks of recent years
/// and the next few, and `2076` for `2026` is a misread 2.
fn flag_unlikely_years(dates: &mut [Date], year: i32) {
    for d in dates {
        let Some(y) = d.date.get(..4).and_then(|y| y.parse::<i32>().ok()) else {
            continue;
        };
        if !(year - 15..=year + 10).contains(&y) {
            d.trust.uncertain = true;
            let why = format!("the year {y} is far from today; it may be misread");
            d.trust.reason = Some(match d.trust.reason.take() {
                Some(r) => format!("{r}; {why}"),
                None => why,
            });
        }
    }
}

/// Below this Tesseract confidence (0–100) a word may be misread. Set from the tuning part of
/// the corpus (`bench/extract.sh`): every wrong amount OCR was sure of stayed under 85 but one
/// (caught by the second reading), and 85 flags about 5 % of the right ones.
pub(crate) const UNSURE_BELOW: u8 = 85;

/// What trails a word in OCR's output that is not part of the fact it belongs to.
const TRAILING: [char; 5] = ['.', ',', ':', ';', ')'];

/// Gives each fact the lowest confidence of the OCR words it was read from, and flags it when
/// that is below [`UNSURE_BELOW`]. A fact whose words are not found keeps no confidence.
pub(crate) fn apply_confidence(facts: &mut Facts, words: &[Word]) {
    if words.is_empty() {
        return;
    }
    let mut least: std::collections::HashMap<&str, u8> = std::collections::HashMap::new();
    for w in words {
        let key = w.text.trim_end_matches(TRAILING);
        let c = w.confidence.clamp(0.0, 100.0).round() as u8;
        least
            .entry(key)
            .and_modify(|m| *m = (*m).min(c))
            .or_insert(c);
    }
    let confidence_of = |text: &str| {
        text.split_whitespace()
            .filter_map(|t| least.get(t.trim_end_matches(TRAILING)))
            .min()
            .copied()
    };
    let judge = |printed: &str, trust: &mut Trust| {
        trust.confidence = confidence_of(printed);
        if let Some(c) = trust.confidence
            && c < UNSURE_BELOW
        {
            trust.uncertain = true;
            let why = format!("OCR was unsure of `{printed}` ({c} % confident)");
            trust.reason = Some(match trust.reason.take() {
                Some(r) => format!("{r}; {why}"),
                None => why,
            });
        }
    };
    for a in &mut facts.amounts {
        judge(&a.text, &mut a.trust);
    }
    for d in &mut facts.dates {
        judge(&d.text, &mut d.trust);
    }
    for r in &mut facts.references {
        judge(&r.value, &mut r.trust);
    }
}

/// The most alternative readings of a page `extract` takes beside the main one.
const MAX_ALTERNATIVES: usize = 4;

/// The words of every page of an `ocr` answer (present when it was asked with boxes).
fn words_of(reading: &serde_json::Value) -> Vec<Word> {
    reading
        .get("pages")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("words"))
        .filter_map(|w| serde_json::from_value::<Vec<Word>>(w.clone()).ok())
        .flatten()
        .collect()
}

/// The `extract` service.
#[derive(Debug, Clone)]
pub(crate) struct Extract {
    ocr: Option<Ocr>,
    pdf: Option<PdfText>,
}

impl Extract {
    /// Reads documents with `ocr` and `pdf` when given.
    pub(crate) fn new(ocr: Option<Ocr>, pdf: Option<PdfText>) -> Self {
        Extract { ocr, pdf }
    }

    /// Where the text came from and its readings (one, or several of one page): the text, and
    /// OCR's words with their confidences when it was read by OCR (here, or by the `ocr` step
    /// whose JSON answer was sent).
    async fn text_of(
        &self,
        req: &ServiceRequest,
    ) -> Result<(TextSource, Vec<Reading>), ServiceError> {
        let essence = media::essence(req.call.content_type.as_deref());
        match essence.as_deref() {
            Some(t) if t.starts_with("text/") => {
                if req.call.body.len() > MAX_TEXT_BYTES {
                    return Err(ServiceError::TooLarge(format!(
                        "text over {MAX_TEXT_BYTES} bytes"
                    )));
                }
                let text = std::str::from_utf8(&req.call.body)
                    .map_err(|_| ServiceError::BadInput("the text is not UTF-8".into()))?;
                Ok((
                    TextSource::Text,
                    vec![Reading {
                        text: text.to_owned(),
                        words: Vec::new(),
                    }],
                ))
            }
            Some("application/json") => {
                let v: serde_json::Value = serde_json::from_slice(&req.call.body)
                    .map_err(|e| ServiceError::BadInput(format!("invalid JSON: {e}")))?;
                let text = v.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
                    ServiceError::BadInput(
                        "JSON input needs a \"text\" field (the output of ocr or pdf-text works)"
                            .into(),
                    )
                })?;
                let mut readings = vec![Reading {
                    text: text.to_owned(),
                    words: words_of(&v),
                }];
                // Other readings of the same page (`process` sends OCR of the image as sent
                // beside OCR of the cleaned image).
                if let Some(alts) = v.get("alternatives") {
                    let alts = alts.as_array().ok_or_else(|| {
                        ServiceError::BadInput(
                            "\"alternatives\" must be a list of readings like {\"text\", \"pages\"}"
                                .into(),
                        )
                    })?;
                    if alts.len() > MAX_ALTERNATIVES {
                        return Err(ServiceError::BadInput(format!(
                            "at most {MAX_ALTERNATIVES} alternative readings"
                        )));
                    }
                    for alt in alts {
                        let text = alt.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
                            ServiceError::BadInput(
                                "each alternative reading needs a \"text\" field".into(),
                            )
                        })?;
                        readings.push(Reading {
                            text: text.to_owned(),
                            words: words_of(alt),
                        });
                    }
                }
                Ok((TextSource::Json, readings))
            }
            _ => {
                let kind = media::identify(
                    req.call.content_type.as_deref(),
                    &req.call.body,
                    &[Kind::Png, Kind::Jpeg, Kind::Tiff, Kind::Webp, Kind::Pdf],
                )?;
                if kind == Kind::Pdf {
                    let pdf = self.pdf.as_ref().ok_or_else(|| {
                        ServiceError::UnsupportedMediaType(
                            "this worker cannot read PDFs; send text".into(),
                        )
                    })?;
                    let text = pdf.read(req).await?.text;
                    Ok((
                        TextSource::PdfText,
                        vec![Reading {
                            text,
                            words: Vec::new(),
                        }],
                    ))
                } else {
                    let ocr = self.ocr.as_ref().ok_or_else(|| {
                        ServiceError::UnsupportedMediaType(
                            "this worker cannot read images; send text".into(),
                        )
                    })?;
                    let mut opts = OcrOptions::from_request(req, ocr.languages())?;
                    // The words' confidences say which figures OCR was unsure of.
                    opts.boxes = true;
                    let page = ocr.image(kind, &req.call.body, &opts).await?;
                    Ok((
                        TextSource::Ocr,
                        vec![Reading {
                            text: page.text,
                            words: page.words.unwrap_or_default(),
                        }],
                    ))
                }
            }
        }
    }
}

impl Service for Extract {
    fn name(&self) -> &'static str {
        rma_proto::service::EXTRACT
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            crate::require_post(&req)?;
            let (source, readings) = self.text_of(&req).await?;
            let facts = extract_readings(&readings);
            let read_here = matches!(source, TextSource::PdfText | TextSource::Ocr);
            let text = readings.into_iter().next().map(|r| r.text);
            Ok(ServiceReply::json(&ExtractResult {
                facts,
                text_source: source,
                text: text.filter(|_| read_here),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rma_fixtures::letters;

    fn values(a: &[Amount]) -> Vec<&str> {
        a.iter().map(|x| x.value.as_str()).collect()
    }

    #[test]
    fn money_amounts() {
        let f = |s: &str| {
            amounts_in(s)
                .into_iter()
                .map(|(_, a)| a.value)
                .collect::<Vec<_>>()
        };
        assert_eq!(f("You owe £1,234.56 now"), ["1234.56"]);
        assert_eq!(f("pay 1234.56 GBP or GBP 10"), ["1234.56", "10.00"]);
        assert_eq!(f("a £1.2k bonus, £3m fund, £5bn"), Vec::<String>::new());
        assert_eq!(f("fee £80 and £ 12.5"), ["80.00"]);
        assert_eq!(f("Balance -£145.20"), ["-145.20"]);
        assert_eq!(f("£0.99"), ["0.99"]);
        assert_eq!(f("£5, £10 and £15."), ["5.00", "10.00", "15.00"]);
    }

    /// (value, uncertain, reason) of each amount in `line`.
    fn read(line: &str) -> Vec<(String, bool, String)> {
        amounts_in(line)
            .into_iter()
            .map(|(_, a)| {
                (
                    a.value,
                    a.trust.uncertain,
                    a.trust.reason.unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn amounts_ocr_misread_are_read_right_and_flagged_never_silently_wrong() {
        // The phone photo of issue 10: the decimal point lost, a space in its place. It used
        // to come out as £1,482.00 with nothing said.
        let r = read("The amount now outstanding 1s £1,482 37");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0, "1482.37");
        assert!(r[0].1 && r[0].2.contains("decimal point"), "{r:?}");
        // A comma where the point belongs.
        let r = read("Arrears £1,482,37 must be paid");
        assert_eq!((r[0].0.as_str(), r[0].1), ("1482.37", true), "{r:?}");
        // Letters for digits: O for 0, l for 1, S for 5.
        let r = read("Balance £1,4O2.37");
        assert_eq!((r[0].0.as_str(), r[0].1), ("1402.37", true), "{r:?}");
        assert!(r[0].2.contains("letters read as digits"), "{r:?}");
        let r = read("pay £l2S.00 today");
        assert_eq!((r[0].0.as_str(), r[0].1), ("125.00", true), "{r:?}");
        // Separators in odd places are kept as digits and flagged.
        let r = read("total £1.482.37");
        assert!(r[0].1, "{r:?}");
        // Printed properly: certain.
        for line in ["You owe £1,234.56 now", "fee £80 is due", "£12,000"] {
            let r = read(line);
            assert!(!r[0].1, "{line}: {r:?}");
        }
        // A space then two digits that are not pence (a date, a count) is not read as pence
        // when more digits follow.
        let r = read("£40 2024");
        assert_eq!((r[0].0.as_str(), r[0].1), ("40.00", false), "{r:?}");
        // Spaces for the comma and the point, a space after the point: read and flagged.
        let r = read("The amount outstanding 1s £2 347 69");
        assert_eq!((r[0].0.as_str(), r[0].1), ("2347.69", true), "{r:?}");
        let r = read("outstanding is £1 658.19.");
        assert_eq!((r[0].0.as_str(), r[0].1), ("1658.19", true), "{r:?}");
        let r = read("Payment received £105;31 pels");
        assert_eq!((r[0].0.as_str(), r[0].1), ("105.31", true), "{r:?}");
        let r = read("The outstanding balance of £5 339° 1s now owed");
        assert!(r[0].1, "{r:?}");
        let r = read("Legal representative's costs £88. 78");
        assert_eq!((r[0].0.as_str(), r[0].1), ("88.78", true), "{r:?}");
        // A figure running into other marks, or into a stray digit, may be cut short.
        for line in [
            "Amount outstanding £1673?",
            "the full balance of £135@.25",
            "rent £169 3°",
        ] {
            let r = read(line);
            assert!(r[0].1, "{line}: {r:?}");
        }
        // A £ joined to the word before it (a postcode's E read as £).
        let r = read("O£22 9LP");
        assert!(r[0].1, "{r:?}");
    }

    #[test]
    fn amounts_and_dates_have_roles_with_the_words_that_decided_them() {
        let role = |f: &Facts, value: &str| {
            f.amounts
                .iter()
                .find(|a| a.value == value)
                .and_then(|a| Some((a.role.clone()?, a.role_evidence.clone()?)))
        };
        let date_role = |f: &Facts, date: &str| {
            f.dates
                .iter()
                .find(|d| d.date == date)
                .and_then(|d| d.role.clone())
        };
        let ct = extract(letters::COUNCIL_TAX.text);
        assert_eq!(
            role(&ct, "187.45"),
            Some(("arrears".into(), "overdue".into()))
        );
        assert_eq!(
            role(&ct, "1312.15"),
            Some(("balance".into(), "balance".into()))
        );
        assert_eq!(date_role(&ct, "2026-03-14").as_deref(), Some("letter_date"));
        assert_eq!(date_role(&ct, "2026-03-01").as_deref(), Some("due"));
        let court = extract(letters::COUNTY_COURT.text);
        assert_eq!(
            role(&court, "205.00").map(|r| r.0).as_deref(),
            Some("costs")
        );
        assert_eq!(role(&court, "80.00").map(|r| r.0).as_deref(), Some("costs"));
        assert_eq!(
            role(&court, "3489.88").map(|r| r.0).as_deref(),
            Some("balance")
        );
        let debt = extract(letters::DEBT_COLLECTION.text);
        assert_eq!(
            role(&debt, "963.70").map(|r| r.0).as_deref(),
            Some("balance")
        );
        assert_eq!(date_role(&debt, "2026-04-18").as_deref(), Some("deadline"));
        assert_eq!(
            date_role(&debt, "2026-04-04").as_deref(),
            Some("letter_date")
        );
        let uc = extract(letters::UNIVERSAL_CREDIT.text);
        assert_eq!(
            role(&uc, "2450.00").map(|r| r.0).as_deref(),
            Some("overpayment")
        );
        assert_eq!(
            role(&uc, "75.32").map(|r| r.0).as_deref(),
            Some("instalment")
        );
        assert_eq!(date_role(&uc, "2026-02-03").as_deref(), Some("letter_date"));
        // Lines that say nothing about an amount give it no role rather than a guess.
        let f = extract("See page 2 for £40.00");
        assert_eq!(f.amounts[0].role, None);
        let f = extract("Offer: pay £300.00 to settle in full");
        assert_eq!(role(&f, "300.00").map(|r| r.0).as_deref(), Some("offer"));
        let f = extract("Your minimum payment of £25.00 is due by 3 May 2026");
        assert_eq!(
            role(&f, "25.00").map(|r| r.0).as_deref(),
            Some("minimum_payment")
        );
        assert_eq!(date_role(&f, "2026-05-03").as_deref(), Some("deadline"));
        let f = extract("The hearing will take place on 9 June 2026 at 10am");
        assert_eq!(date_role(&f, "2026-06-09").as_deref(), Some("hearing"));
    }

    #[test]
    fn a_page_without_text_says_so() {
        for blank in ["", "  \n\n ", "|  — ."] {
            let f = extract(blank);
            assert!(
                f.warning
                    .as_deref()
                    .is_some_and(|w| w.contains("no text was found")),
                "{blank:?}: {f:?}"
            );
        }
        assert_eq!(extract("Dear Ms Smith, you owe £5.00").warning, None);
    }

    #[test]
    fn dates_with_letters_for_digits_are_read_and_flagged() {
        let d = dates_in("Pay by 12/0l/2026 or else");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].1.date, "2026-01-12");
        assert!(d[0].1.trust.uncertain, "{d:?}");
        assert!(
            d[0].1
                .trust
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("12/0l/2026")),
            "{d:?}"
        );
        // A clean date is not flagged, and words are not dates.
        let d = dates_in("Pay by 12/01/2026");
        assert_eq!((d.len(), d[0].1.trust.uncertain), (1, false), "{d:?}");
        assert!(
            dates_in("see SO/IS/ZOZO")
                .iter()
                .all(|(_, d)| d.trust.uncertain)
        );
        assert!(dates_in("ref AB/CD/EFGH").is_empty());
    }

    #[test]
    fn low_ocr_confidence_flags_the_fact_it_touches() {
        let mut facts = extract("Balance £1,482.37\nPay by 12/03/2026\nAccount number: 4471-22");
        let word = |text: &str, confidence: f32| Word {
            text: text.into(),
            confidence,
            x: 0,
            y: 0,
            w: 1,
            h: 1,
        };
        apply_confidence(
            &mut facts,
            &[
                word("Balance", 96.0),
                word("£1,482.37", 41.0),
                word("12/03/2026", 93.0),
                word("4471-22", 88.0),
            ],
        );
        let a = &facts.amounts[0];
        assert_eq!(
            (a.trust.confidence, a.trust.uncertain),
            (Some(41), true),
            "{a:?}"
        );
        assert!(
            a.trust
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("41 %")),
            "{a:?}"
        );
        let d = &facts.dates[0];
        assert_eq!(
            (d.trust.confidence, d.trust.uncertain),
            (Some(93), false),
            "{d:?}"
        );
        let r = &facts.references[0];
        assert_eq!(
            (r.trust.confidence, r.trust.uncertain),
            (Some(88), false),
            "{r:?}"
        );
    }

    proptest::proptest! {
        /// Any text, money signs and letters outside ASCII included, is read without a panic.
        #[test]
        fn extract_never_panics(
            a in "\\PC{0,60}",
            b in "[£0-9.,OlSİẞ /-]{0,30}",
            c in "\\PC{0,60}",
        ) {
            let f = extract(&format!("{a}£{b}{c}\n{b} by {c}"));
            for x in &f.amounts {
                proptest::prop_assert!(x.value.ends_with(|ch: char| ch.is_ascii_digit()));
            }
        }

        /// The promise of issue 10 for amounts: a printed amount, damaged the ways OCR damages
        /// them, is read as its true value or flagged — never another value unflagged.
        #[test]
        fn a_damaged_amount_is_right_or_flagged(
            pounds in 0u64..10_000_000,
            pence in 0u32..100,
            damage in 0usize..5,
            at in 0usize..16,
        ) {
            let with_commas = {
                let d = pounds.to_string();
                let mut out = String::new();
                for (i, c) in d.chars().enumerate() {
                    if i > 0 && (d.len() - i) % 3 == 0 {
                        out.push(',');
                    }
                    out.push(c);
                }
                out
            };
            let printed = format!("{with_commas}.{pence:02}");
            let damaged = match damage {
                0 => printed.clone(),
                1 => printed.replace('.', " "),
                2 => printed.replace('.', ","),
                3 => {
                    // One digit read as a look-alike letter.
                    let digits: Vec<usize> = printed
                        .char_indices()
                        .filter(|(_, c)| matches!(c, '0' | '1' | '5' | '8'))
                        .map(|(i, _)| i)
                        .collect();
                    match digits.get(at % digits.len().max(1)) {
                        Some(&i) => {
                            let letter = match &printed[i..=i] {
                                "0" => "O",
                                "1" => "l",
                                "5" => "S",
                                _ => "B",
                            };
                            format!("{}{letter}{}", &printed[..i], &printed[i + 1..])
                        }
                        None => printed.clone(),
                    }
                }
                _ => printed.replacen(',', ".", 1),
            };
            let line = format!("The balance is £{damaged} now");
            let truth = format!("{pounds}.{pence:02}");
            for (_, a) in amounts_in(&line) {
                proptest::prop_assert!(
                    a.value == truth || a.trust.uncertain,
                    "{line:?} read as {} unflagged (truth {truth})",
                    a.value
                );
            }
        }
    }

    #[test]
    fn uk_dates() {
        let f = |s: &str| {
            dates_in(s)
                .into_iter()
                .map(|(_, d)| d.date)
                .collect::<Vec<_>>()
        };
        assert_eq!(f("Date: 03/02/2026"), ["2026-02-03"], "day first");
        assert_eq!(
            f("by 9th May 2026 or 1st of June 2026"),
            ["2026-05-09", "2026-06-01"]
        );
        assert_eq!(
            f("14 Sept 2026, March 4, 2026"),
            ["2026-09-14", "2026-03-04"]
        );
        assert_eq!(
            f("31/02/2026 and 29/02/2024"),
            ["2024-02-29"],
            "impossible dates ignored"
        );
        assert_eq!(f("12.06.25"), ["2025-06-12"]);
        assert!(f("on 01 Sep").is_empty(), "no year, no date");
    }

    #[test]
    fn references_sort_codes_and_ni_numbers() {
        let f = extract(
            "Account number: 12345678\nSort code: 12-34-56\nYour ref DM/99/12\nNI number JT 47 31 92 B\nRoom 101",
        );
        let refs: Vec<&str> = f.references.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(refs, ["12345678", "DM/99/12"]);
        assert_eq!(f.sort_codes, ["12-34-56"]);
        assert_eq!(f.national_insurance_numbers, ["JT473192B"]);
        assert!(
            f.dates.is_empty(),
            "a sort code is not a date: {:?}",
            f.dates
        );
    }

    #[test]
    fn every_fixture_letter_is_read_right() {
        for l in letters::ALL {
            let f = extract(l.text);
            assert_eq!(
                f.letter_type, l.letter_type,
                "{}: evidence {:?}",
                l.name, f.letter_type_evidence
            );
            assert!(!f.letter_type_evidence.is_empty());
            for a in l.amounts {
                assert!(
                    values(&f.amounts).contains(a),
                    "{}: amount {a} in {:?}",
                    l.name,
                    values(&f.amounts)
                );
            }
            let dates: Vec<&str> = f.dates.iter().map(|d| d.date.as_str()).collect();
            for d in l.dates {
                assert!(dates.contains(d), "{}: date {d} in {dates:?}", l.name);
            }
            let refs: Vec<&str> = f.references.iter().map(|r| r.value.as_str()).collect();
            for r in l.references {
                assert!(refs.contains(r), "{}: reference {r} in {refs:?}", l.name);
            }
            assert_eq!(f.sort_codes, l.sort_codes, "{}", l.name);
            assert_eq!(
                f.sender.as_ref().map(|s| s.name.as_str()),
                Some(l.sender),
                "{}",
                l.name
            );
        }
        let dc = extract(letters::DEBT_COLLECTION.text);
        assert_eq!(dc.original_creditor.as_deref(), Some("Very Catalogue"));
    }

    #[test]
    fn letters_written_differently_are_still_classified() {
        let cases = [
            (
                "Dear tenant, your Council Tax bill for Band C is overdue. Liability order hearing.",
                "council_tax",
            ),
            (
                "Jobcentre Plus: your Universal Credit payment will be reduced.",
                "universal_credit",
            ),
            (
                "Intrum UK Ltd. We are a debt collector acting for Vodafone. Outstanding balance £120.00",
                "debt_collection",
            ),
            (
                "Claim Form (CPR Part 7). County Court Money Claims Centre. Defendant: A N Other",
                "county_court",
            ),
            ("Thames Water: your water bill is overdue", "water"),
            (
                "Octopus Energy: your electricity account is in arrears",
                "utility",
            ),
            (
                "DEFAULT NOTICE served under section 87(1) of the Consumer Credit Act 1974. To remedy the breach pay £240.00",
                "default_notice",
            ),
            (
                "NOTICE OF ENFORCEMENT. An enforcement agent may visit to take control of goods. Compliance stage fee £75.00",
                "enforcement_agent",
            ),
            (
                "HM Revenue & Customs: you were overpaid tax credits of £1,204.00",
                "hmrc",
            ),
            (
                "Notice seeking possession of a property let on an assured tenancy (Housing Act 1988). Rent arrears £2,310.00",
                "rent_arrears",
            ),
            (
                "Your credit card account is in arrears: 3 missed payments. Minimum payment £25.00",
                "credit_arrears",
            ),
            ("Klarna: your Pay in 3 instalment of £33.33 failed", "bnpl"),
            (
                "PARKING CHARGE NOTICE. The registered keeper of vehicle AB12 CDE must pay £100.00",
                "parking_charge",
            ),
            ("Happy birthday from Aunt May", "other"),
        ];
        for (text, kind) in cases {
            assert_eq!(classify(text).0, kind, "{text}");
        }
    }

    #[tokio::test]
    async fn alternative_readings_are_merged_and_bad_ones_refused() {
        let call = |body: serde_json::Value| {
            let e = Extract::new(None, None);
            async move {
                let req = ServiceRequest::from(rma_proto::ServiceCall::post(
                    "extract",
                    Some("application/json".into()),
                    bytes::Bytes::from(body.to_string()),
                ));
                match e.call(req).await {
                    Ok(r) => r,
                    Err(err) => err.into_reply(),
                }
            }
        };
        let ok = call(serde_json::json!({
            "text": "Amount due: £1,243.96",
            "alternatives": [{"text": "Amount due: £1,243.90"}]
        }))
        .await;
        assert_eq!(ok.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&ok.body).expect("json");
        assert_eq!(v["amounts"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["amounts"][0]["uncertain"], true, "{v}");
        for bad in [
            serde_json::json!({"text": "x", "alternatives": "y"}),
            serde_json::json!({"text": "x", "alternatives": [{"pages": []}]}),
            serde_json::json!({"text": "x", "alternatives": [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"text": "d"}, {"text": "e"}]}),
        ] {
            let r = call(bad.clone()).await;
            assert_eq!(r.status, 400, "{bad}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(v["error"], "bad_request", "{v}");
        }
    }

    #[test]
    fn a_far_year_is_flagged() {
        let mut f = extract("Pay by 18 November 2076. Letter date: 3 May 2026.");
        flag_unlikely_years(&mut f.dates, 2026);
        assert!(f.dates[0].trust.uncertain, "{:?}", f.dates[0]);
        assert!(!f.dates[1].trust.uncertain);
    }

    /// Every letter of the corpus's tuning part, read from its true text (no OCR): the kind,
    /// sender, every amount and date with its role, and every reference must come out right.
    /// What OCR does to them is measured by `bench/extract.sh`.
    #[test]
    fn the_corpus_text_is_read_exactly() {
        use rma_fixtures::corpus::{Fonts, TUNE_SEED, truth};
        use rma_fixtures::score::{Score, score};
        let fonts = Fonts::load().expect("fonts (scripts/test installs them)");
        let mut total = Score::default();
        for i in 0..180 {
            let t = truth(&fonts, TUNE_SEED, false, i).expect("letter");
            total.add(&score(&t, &extract(&t.text)));
        }
        let misses = total.misses.join("\n");
        assert_eq!(total.kind, 180, "{misses}");
        assert_eq!(total.sender, 180, "{misses}");
        for (field, c) in [
            ("amounts", total.amounts),
            ("dates", total.dates),
            ("references", total.references),
        ] {
            assert_eq!(c.wrong_unflagged, 0, "{field}: {misses}");
            assert_eq!(c.right, c.truth, "{field}: {misses}");
            assert_eq!(c.role_right, c.role_scored, "{field}: {misses}");
        }
    }
}

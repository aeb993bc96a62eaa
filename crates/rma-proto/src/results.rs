//! The JSON answers of the services and of `process`. Services build these and serialise them;
//! the coordinator, the CLI, the tests and (through generated TypeScript) the web UI read them.

use serde::{Deserialize, Serialize};

use crate::job::JobStep;

/// One recognised word, with its box, when `?boxes=true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Word {
    /// The word.
    pub text: String,
    /// Tesseract's confidence, 0–100.
    pub confidence: f32,
    /// Left edge in pixels.
    pub x: u32,
    /// Top edge in pixels.
    pub y: u32,
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
}

/// Where the text of a PDF page came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum PageSource {
    /// The PDF's text layer.
    Text,
    /// OCR of the rendered page.
    Ocr,
    /// Neither: no text layer and OCR was not run.
    None,
}

/// The text of one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Page {
    /// 1-based page number.
    pub page: u32,
    /// The text, lines separated by `\n`.
    pub text: String,
    /// Mean OCR word confidence, 0–100, when the page was OCR'd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub confidence: Option<f32>,
    /// Where the text came from (PDF pages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub source: Option<PageSource>,
    /// Word boxes, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub words: Option<Vec<Word>>,
}

/// The answer of `ocr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OcrResult {
    /// All pages' text, pages separated by a blank line.
    pub text: String,
    /// Each page.
    pub pages: Vec<Page>,
    /// Mean confidence over pages, 0–100.
    pub confidence: f32,
    /// The language(s) read, `eng` or `eng+fra`.
    pub lang: String,
    /// Always `tesseract`.
    pub engine: String,
}

/// The answer of `pdf-text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PdfTextResult {
    /// All pages' text, pages separated by a blank line.
    pub text: String,
    /// Pages in the PDF.
    pub page_count: u32,
    /// Each page.
    pub pages: Vec<Page>,
    /// Pages without a text layer that were OCR'd.
    pub ocr_pages: Vec<u32>,
    /// Pages left without text (no text layer, OCR off or unavailable).
    pub pages_without_text: Vec<u32>,
}

/// The answer of `store` (`POST`): the object's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StoredObject {
    /// BLAKE3 of the bytes, hex: `GET /api/service/store/{hash}` reads it back.
    pub hash: String,
    /// Bytes.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub size: u64,
    /// Its media type (sniffed, else as sent).
    pub content_type: String,
    /// False when the same bytes were stored already.
    pub created: bool,
}

/// The answer of `cache` (`PUT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CacheStored {
    /// The cache key.
    pub key: String,
    /// Bytes stored.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub size: u64,
}

/// How far a fact read from a letter can be trusted; flattened into each fact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Trust {
    /// How sure the reading is: the lowest Tesseract confidence (0–100) of the words it came
    /// from; absent when the text was not read by OCR (a PDF's text, typed text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub confidence: Option<u8>,
    /// Set when the figure may be misread: an adviser checks it against the letter.
    #[serde(default)]
    pub uncertain: bool,
    /// Why it is uncertain (or how an unclear print was read), in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub reason: Option<String>,
}

impl Trust {
    /// A fact that may be misread, and why.
    pub fn unsure(reason: impl Into<String>) -> Self {
        Trust {
            confidence: None,
            uncertain: true,
            reason: Some(reason.into()),
        }
    }
}

/// A money amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Amount {
    /// Normalised: digits, a dot, two decimals ("1312.15"); negative with a leading '-'.
    pub value: String,
    /// As printed.
    pub text: String,
    /// Always GBP for now.
    pub currency: String,
    /// The line it was on.
    pub line: String,
    /// What the amount is, when the words around it say: `balance`, `arrears`, `instalment`,
    /// `costs`, `minimum_payment`, `offer`, `overpayment`, `payment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub role: Option<String>,
    /// The words that decided the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub role_evidence: Option<String>,
    /// How sure the reading is.
    #[serde(flatten)]
    #[cfg_attr(feature = "ts", ts(flatten))]
    pub trust: Trust,
}

/// A date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Date {
    /// ISO 8601 (`YYYY-MM-DD`).
    pub date: String,
    /// As printed.
    pub text: String,
    /// The line it was on.
    pub line: String,
    /// What the date is, when the words around it say: `deadline` (pay by, within, before),
    /// `letter_date`, `hearing`, `due` (an instalment's), `period` (from … to …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub role: Option<String>,
    /// The words that decided the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub role_evidence: Option<String>,
    /// How sure the reading is.
    #[serde(flatten)]
    #[cfg_attr(feature = "ts", ts(flatten))]
    pub trust: Trust,
}

/// A labelled reference or account number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Reference {
    /// The number as printed.
    pub value: String,
    /// The label before it ("Account number", "Our reference").
    pub label: String,
    /// The line it was on.
    pub line: String,
    /// How sure the reading is.
    #[serde(flatten)]
    #[cfg_attr(feature = "ts", ts(flatten))]
    pub trust: Trust,
}

/// The sender or creditor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Sender {
    /// Its name.
    pub name: String,
    /// Why we think so.
    pub evidence: String,
}

/// Everything found in one letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Facts {
    /// `council_tax`, `universal_credit` (DWP), `hmrc`, `bank_statement`, `credit_arrears`
    /// (bank, card or loan arrears), `bnpl`, `default_notice` (Consumer Credit Act),
    /// `debt_collection`, `county_court`, `enforcement_agent`, `utility` (energy), `water`,
    /// `rent_arrears`, `parking_charge` or `other`.
    pub letter_type: String,
    /// The phrases that decided the type.
    pub letter_type_evidence: Vec<String>,
    /// The sender.
    pub sender: Option<Sender>,
    /// The original creditor, when a debt was sold or passed on.
    pub original_creditor: Option<String>,
    /// Money amounts, in order of appearance, without repeats.
    pub amounts: Vec<Amount>,
    /// Dates, in order of appearance, without repeats.
    pub dates: Vec<Date>,
    /// Reference and account numbers.
    pub references: Vec<Reference>,
    /// Sort codes (`NN-NN-NN`).
    pub sort_codes: Vec<String>,
    /// National Insurance numbers (`QQ123456C`).
    pub national_insurance_numbers: Vec<String>,
    /// Set when the facts cannot be trusted as a whole, in plain words: no text was found on
    /// the page (blank, upside down, too dark or blurred), so nothing was extracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub warning: Option<String>,
}

/// Where `extract` got its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum TextSource {
    /// Plain text was sent.
    Text,
    /// JSON with a `text` field was sent (the output of `ocr` or `pdf-text`).
    Json,
    /// A PDF, read with `pdf-text` on the worker.
    PdfText,
    /// An image, read with `ocr` on the worker.
    Ocr,
}

/// The answer of `extract`: the facts, where the text came from, and the text when the worker
/// read it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ExtractResult {
    /// The facts.
    #[serde(flatten)]
    pub facts: Facts,
    /// Where the text came from.
    pub text_source: TextSource,
    /// The text read, when a document (not text) was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub text: Option<String>,
}

/// Whether `process` read an image or a PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum DocumentKind {
    /// PNG, JPEG, TIFF or WebP.
    Image,
    /// PDF.
    Pdf,
}

/// What `process` saved with `store`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StoredRefs {
    /// The document as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub original: Option<StoredObject>,
    /// The cleaned-up image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub enhanced: Option<StoredObject>,
    /// This result itself (without this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub result: Option<StoredObject>,
}

/// The answer of `process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProcessResult {
    /// Image or PDF.
    pub kind: DocumentKind,
    /// Its media type.
    pub content_type: String,
    /// The text read.
    pub text: String,
    /// Each page.
    pub pages: Vec<Page>,
    /// PDF pages that were OCR'd (absent for images).
    pub ocr_pages: Option<Vec<u32>>,
    /// Mean OCR confidence (images).
    pub confidence: Option<f32>,
    /// The facts.
    pub facts: ExtractResult,
    /// Which step ran where.
    pub steps: Vec<JobStep>,
    /// What was saved.
    pub stored: StoredRefs,
}

/// A job's answer when it is JSON: one of the service results above, tried in this order, or
/// any other JSON (the `ai` backend's answer, `echo` of a JSON body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ServiceResult {
    /// `process`.
    Process(Box<ProcessResult>),
    /// `extract`.
    Extract(ExtractResult),
    /// `ocr`.
    Ocr(OcrResult),
    /// `pdf-text`.
    PdfText(PdfTextResult),
    /// `store`.
    Stored(StoredObject),
    /// Anything else.
    Other(#[cfg_attr(feature = "ts", ts(type = "{ [key: string]: unknown }"))] serde_json::Value),
}

impl ServiceResult {
    /// The text read, for results that have one.
    pub fn text(&self) -> Option<&str> {
        match self {
            ServiceResult::Process(p) => Some(&p.text),
            ServiceResult::Extract(e) => e.text.as_deref(),
            ServiceResult::Ocr(o) => Some(&o.text),
            ServiceResult::PdfText(p) => Some(&p.text),
            ServiceResult::Stored(_) | ServiceResult::Other(_) => None,
        }
    }

    /// The facts, for `process` and `extract`.
    pub fn facts(&self) -> Option<&Facts> {
        match self {
            ServiceResult::Process(p) => Some(&p.facts.facts),
            ServiceResult::Extract(e) => Some(&e.facts),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_told_apart_by_their_fields() {
        let ocr = r#"{"text":"hi","pages":[{"page":1,"text":"hi","confidence":90.0}],"confidence":90.0,"lang":"eng","engine":"tesseract"}"#;
        assert!(matches!(
            serde_json::from_str::<ServiceResult>(ocr).expect("ocr"),
            ServiceResult::Ocr(_)
        ));
        let stored = r#"{"hash":"ab","size":3,"content_type":"text/plain","created":true}"#;
        assert!(matches!(
            serde_json::from_str::<ServiceResult>(stored).expect("store"),
            ServiceResult::Stored(_)
        ));
        let other = r#"{"choices":[]}"#;
        assert!(matches!(
            serde_json::from_str::<ServiceResult>(other).expect("other"),
            ServiceResult::Other(_)
        ));
    }

    #[test]
    fn extract_result_is_flat() {
        let r = ExtractResult {
            facts: Facts {
                letter_type: "other".into(),
                letter_type_evidence: vec![],
                sender: None,
                original_creditor: None,
                amounts: vec![],
                dates: vec![],
                references: vec![],
                sort_codes: vec![],
                national_insurance_numbers: vec![],
                warning: None,
            },
            text_source: TextSource::PdfText,
            text: None,
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["letter_type"], "other");
        assert_eq!(v["text_source"], "pdf-text");
        assert!(v.get("text").is_none());
        let back: ServiceResult = serde_json::from_value(v).expect("back");
        assert!(matches!(back, ServiceResult::Extract(_)));
    }
}

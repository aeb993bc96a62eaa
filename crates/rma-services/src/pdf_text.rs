//! `pdf-text`: PDF in; the text layer per page out. Pages without one (scans) are OCR'd when
//! this worker also runs `ocr` (unless `?ocr=false`), and the answer says which.

use std::sync::Arc;

use rma_proto::results::{Page, PageSource, PdfTextResult};

use crate::media::{self, Kind};
use crate::ocr::{Ocr, OcrOptions};
use crate::pdf::PdfFile;
use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest};

/// A page with fewer letters and digits than this has no usable text layer.
const MIN_TEXT_CHARS: usize = 8;

/// The `pdf-text` service.
#[derive(Debug, Clone)]
pub(crate) struct PdfText {
    ocr: Option<Ocr>,
}

impl PdfText {
    /// With OCR fallback when `ocr` is given.
    pub(crate) fn new(ocr: Option<Ocr>) -> Self {
        PdfText { ocr }
    }

    /// Reads a PDF: text layer, OCR for pages without one. Returns the JSON answer.
    pub(crate) async fn read(&self, req: &ServiceRequest) -> Result<PdfTextResult, ServiceError> {
        media::identify(
            req.call.content_type.as_deref(),
            &req.call.body,
            &[Kind::Pdf],
        )?;
        let pdf = Arc::new(PdfFile::open(&req.call.body).await?);
        let mut texts = pdf.text().await?;
        let empty: Vec<u32> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| t.chars().filter(|c| c.is_alphanumeric()).count() < MIN_TEXT_CHARS)
            .map(|(i, _)| i as u32 + 1)
            .collect();
        let want_ocr = req.call.query_param("ocr") != Some("false");
        let mut confidence = vec![None; texts.len()];
        let mut ocr_pages = Vec::new();
        if let (Some(ocr), true, false) = (&self.ocr, want_ocr, empty.is_empty()) {
            let opts = OcrOptions::from_request(req, ocr.languages())?;
            req.progress.report(0, empty.len() as u32);
            let read = ocr.pdf_pages(&pdf, &empty, &opts, &req.progress).await?;
            for (n, page) in empty.iter().zip(read) {
                texts[*n as usize - 1] = page.text;
                confidence[*n as usize - 1] = Some(page.confidence);
            }
            ocr_pages = empty.clone();
        }
        let pages = texts
            .iter()
            .zip(confidence)
            .zip(1..)
            .map(|((t, confidence), n)| {
                let source = if ocr_pages.contains(&n) {
                    PageSource::Ocr
                } else if empty.contains(&n) {
                    PageSource::None
                } else {
                    PageSource::Text
                };
                Page {
                    page: n,
                    text: t.clone(),
                    confidence,
                    source: Some(source),
                    words: None,
                }
            })
            .collect();
        let without: Vec<u32> = empty
            .iter()
            .copied()
            .filter(|n| !ocr_pages.contains(n))
            .collect();
        Ok(PdfTextResult {
            text: texts.join("\n\n"),
            page_count: pdf.pages,
            pages,
            ocr_pages,
            pages_without_text: without,
        })
    }
}

impl Service for PdfText {
    fn name(&self) -> &'static str {
        rma_proto::service::PDF_TEXT
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            crate::require_post(&req)?;
            Ok(ServiceReply::json(&self.read(&req).await?))
        })
    }
}

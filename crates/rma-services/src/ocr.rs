//! `ocr`: image (PNG, JPEG, TIFF, WebP) or PDF in; text, per-page text, mean confidence and, with
//! `?boxes=true`, word boxes out. `?lang=eng+fra` picks installed languages (English by default).
//! PDF pages are rendered at 300 dpi and read in parallel, as many at once as there are engines.

use std::sync::Arc;

use rma_proto::results::{OcrResult, Page};

use crate::engine::{OcrPool, PageText, check_lang};
use crate::media::{self, Kind};
use crate::pdf::PdfFile;
use crate::{BoxFuture, Progress, Service, ServiceError, ServiceReply, ServiceRequest};

/// The `ocr` service.
#[derive(Debug, Clone)]
pub(crate) struct Ocr {
    pool: OcrPool,
    langs: Arc<Vec<String>>,
}

/// Options of one OCR call.
#[derive(Debug, Clone)]
pub(crate) struct OcrOptions {
    /// Tesseract language(s).
    pub lang: String,
    /// Whether to return word boxes.
    pub boxes: bool,
    /// `layout=block`: read the page as one block of text (for a cleaned page).
    pub layout: crate::engine::Layout,
}

impl OcrOptions {
    /// From `?lang=` and `?boxes=`.
    pub(crate) fn from_request(
        req: &ServiceRequest,
        installed: &[String],
    ) -> Result<Self, ServiceError> {
        let lang = req
            .call
            .query_param("lang")
            .filter(|l| !l.is_empty())
            .unwrap_or("eng")
            .to_owned();
        check_lang(&lang, installed)?;
        let boxes = matches!(req.call.query_param("boxes"), Some("true" | "1" | "yes"));
        let layout = match req.call.query_param("layout") {
            None | Some("" | "auto") => crate::engine::Layout::Auto,
            Some("block") => crate::engine::Layout::Block,
            Some(other) => {
                return Err(ServiceError::BadInput(format!(
                    "layout {other:?} is not auto or block"
                )));
            }
        };
        Ok(OcrOptions {
            lang,
            boxes,
            layout,
        })
    }
}

impl Ocr {
    /// OCR over `pool`.
    pub(crate) fn new(pool: OcrPool) -> Self {
        Ocr {
            pool,
            langs: Arc::new(crate::engine::installed_languages()),
        }
    }

    /// The languages this worker can read.
    pub(crate) fn languages(&self) -> &[String] {
        &self.langs
    }

    /// Reads one image (PNG/JPEG/TIFF/WebP bytes) after checking its size.
    pub(crate) async fn image(
        &self,
        kind: Kind,
        body: &[u8],
        opts: &OcrOptions,
    ) -> Result<PageText, ServiceError> {
        media::check_pixels(body)?;
        let bytes = if kind == Kind::Webp {
            // Leptonica may lack WebP; hand it a PNG.
            let body = body.to_vec();
            tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ServiceError> {
                let img = media::decode(&body)?;
                let mut png = std::io::Cursor::new(Vec::new());
                img.write_to(&mut png, image::ImageFormat::Png)
                    .map_err(|e| ServiceError::Internal(format!("encoding PNG: {e}")))?;
                Ok(png.into_inner())
            })
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))??
        } else {
            body.to_vec()
        };
        self.pool
            .recognise_with(bytes, &opts.lang, opts.boxes, opts.layout)
            .await
    }

    /// Renders and reads `pages` (1-based) of a PDF, in parallel; results in page order.
    pub(crate) async fn pdf_pages(
        &self,
        pdf: &Arc<PdfFile>,
        pages: &[u32],
        opts: &OcrOptions,
        progress: &Progress,
    ) -> Result<Vec<PageText>, ServiceError> {
        let limit = Arc::new(tokio::sync::Semaphore::new(self.pool.threads() + 1));
        let mut set = tokio::task::JoinSet::new();
        for (i, &n) in pages.iter().enumerate() {
            let (pdf, pool, opts, limit) =
                (pdf.clone(), self.pool.clone(), opts.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let png = pdf.render(n).await?;
                let text = pool.recognise(png, &opts.lang, opts.boxes).await?;
                Ok::<_, ServiceError>((i, text))
            });
        }
        let mut out: Vec<Option<PageText>> = vec![None; pages.len()];
        let mut done = 0;
        while let Some(joined) = set.join_next().await {
            let (i, text) =
                joined.map_err(|e| ServiceError::Internal(format!("page task: {e}")))??;
            out[i] = Some(text);
            done += 1;
            progress.report(done, pages.len() as u32);
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// The answer of `ocr`: full text, pages, mean confidence.
pub(crate) fn ocr_result(pages: Vec<PageText>, lang: &str) -> OcrResult {
    let text = pages
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    let confidence = if pages.is_empty() {
        0.0
    } else {
        pages.iter().map(|p| p.confidence).sum::<f32>() / pages.len() as f32
    };
    let pages = pages
        .into_iter()
        .zip(1..)
        .map(|(p, page)| Page {
            page,
            text: p.text,
            confidence: Some(p.confidence),
            source: None,
            words: p.words,
        })
        .collect();
    OcrResult {
        text,
        pages,
        confidence,
        lang: lang.to_owned(),
        engine: "tesseract".into(),
    }
}

impl Service for Ocr {
    fn name(&self) -> &'static str {
        rma_proto::service::OCR
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            crate::require_post(&req)?;
            let kind = media::identify(
                req.call.content_type.as_deref(),
                &req.call.body,
                &[Kind::Png, Kind::Jpeg, Kind::Tiff, Kind::Webp, Kind::Pdf],
            )?;
            let opts = OcrOptions::from_request(&req, &self.langs)?;
            let pages = if kind == Kind::Pdf {
                let pdf = Arc::new(PdfFile::open(&req.call.body).await?);
                let all: Vec<u32> = (1..=pdf.pages).collect();
                req.progress.report(0, pdf.pages);
                self.pdf_pages(&pdf, &all, &opts, &req.progress).await?
            } else {
                vec![self.image(kind, &req.call.body, &opts).await?]
            };
            Ok(ServiceReply::json(&ocr_result(pages, &opts.lang)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(query: &str) -> Result<OcrOptions, ServiceError> {
        let req = ServiceRequest::from(rma_proto::ServiceCall {
            query: query.to_owned(),
            ..rma_proto::ServiceCall::post("ocr", Some("image/png".into()), bytes::Bytes::new())
        });
        OcrOptions::from_request(&req, &["eng".to_owned()])
    }

    #[test]
    fn layout_is_auto_unless_block_is_asked_and_anything_else_is_refused() {
        assert_eq!(opts("").expect("ok").layout, crate::engine::Layout::Auto);
        assert_eq!(
            opts("layout=auto").expect("ok").layout,
            crate::engine::Layout::Auto
        );
        assert_eq!(
            opts("boxes=true&layout=block").expect("ok").layout,
            crate::engine::Layout::Block
        );
        for bad in ["layout=column", "layout=6", "layout=BLOCK"] {
            assert_eq!(opts(bad).map(|_| ()).expect_err(bad).status(), 400, "{bad}");
        }
    }
}

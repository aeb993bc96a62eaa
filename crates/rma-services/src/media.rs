//! What a document really is, read from its first bytes (never from the header alone), and the
//! limits that keep a small file from becoming a huge job.

use crate::ServiceError;

/// Largest image accepted, in pixels (60 megapixels: an A4 page at 600 dpi is 35 MP).
pub(crate) const MAX_PIXELS: u64 = 60_000_000;

/// Most PDF pages accepted.
pub(crate) const MAX_PDF_PAGES: u32 = 200;

pub(crate) use rma_proto::media::{Kind, essence, sniff};

/// Whether a declared type says "I don't know": absent, octet-stream, or a browser's guess.
fn is_generic(essence: &str) -> bool {
    matches!(
        essence,
        "application/octet-stream" | "binary/octet-stream" | "application/x-www-form-urlencoded"
    )
}

/// Identifies a document for a service that reads `accepted` kinds. The bytes decide; a
/// declared type that names another kind is a 415, so a file that is not what it claims is
/// refused rather than misread.
pub(crate) fn identify(
    content_type: Option<&str>,
    body: &[u8],
    accepted: &[Kind],
) -> Result<Kind, ServiceError> {
    if body.is_empty() {
        return Err(ServiceError::BadInput(
            "the request body is empty; send a document".into(),
        ));
    }
    let declared = essence(content_type);
    let kind = sniff(body).ok_or_else(|| {
        ServiceError::UnsupportedMediaType(format!(
            "the document is not a PNG, JPEG, TIFF, WebP image or a PDF (declared {})",
            declared.as_deref().unwrap_or("nothing")
        ))
    })?;
    if let Some(d) = declared.as_deref()
        && !is_generic(d)
        && d != kind.mime()
        && !(kind == Kind::Jpeg && d == "image/jpg")
    {
        return Err(ServiceError::UnsupportedMediaType(format!(
            "the document says it is {d} but its bytes are {}",
            kind.mime()
        )));
    }
    if !accepted.contains(&kind) {
        return Err(ServiceError::UnsupportedMediaType(format!(
            "this service does not read {}",
            kind.mime()
        )));
    }
    Ok(kind)
}

/// Refuses images over [`MAX_PIXELS`] before decoding them (decompression bombs), from the
/// dimensions in the header.
pub(crate) fn check_pixels(body: &[u8]) -> Result<(u32, u32), ServiceError> {
    let reader = image::ImageReader::new(std::io::Cursor::new(body))
        .with_guessed_format()
        .map_err(|e| ServiceError::BadInput(format!("unreadable image: {e}")))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| ServiceError::BadInput(format!("unreadable image header: {e}")))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ServiceError::TooLarge(format!(
            "the image is {w}×{h} pixels, over the limit of {} megapixels",
            MAX_PIXELS / 1_000_000
        )));
    }
    Ok((w, h))
}

/// Decodes an image with the pixel limit enforced by the decoder too.
pub(crate) fn decode(body: &[u8]) -> Result<image::DynamicImage, ServiceError> {
    check_pixels(body)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(body))
        .with_guessed_format()
        .map_err(|e| ServiceError::BadInput(format!("unreadable image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| ServiceError::BadInput(format!("the image could not be decoded: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_that_lies_about_its_type_is_415() {
        let pdf = b"%PDF-1.4 ...";
        assert_eq!(
            identify(Some("application/pdf"), pdf, &[Kind::Pdf]).expect("ok"),
            Kind::Pdf
        );
        assert_eq!(identify(None, pdf, &[Kind::Pdf]).expect("ok"), Kind::Pdf);
        assert_eq!(
            identify(Some("application/octet-stream"), pdf, &[Kind::Pdf]).expect("ok"),
            Kind::Pdf
        );
        assert_eq!(
            identify(Some("image/png"), pdf, &[Kind::Pdf])
                .expect_err("lie")
                .status(),
            415
        );
        assert_eq!(
            identify(Some("application/pdf"), b"just text", &[Kind::Pdf])
                .expect_err("x")
                .status(),
            415
        );
        assert_eq!(
            identify(Some("application/pdf"), pdf, &[Kind::Png])
                .expect_err("x")
                .status(),
            415
        );
        assert_eq!(
            identify(None, b"", &[Kind::Png]).expect_err("x").status(),
            400
        );
    }

    #[test]
    fn a_decompression_bomb_is_413_before_decoding() {
        let png = rma_fixtures::png_bomb(100_000, 100_000);
        let err = check_pixels(&png).expect_err("bomb");
        assert_eq!(err.status(), 413, "{err}");
    }
}

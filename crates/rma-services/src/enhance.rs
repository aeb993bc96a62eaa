//! `enhance`: cleans a photo or scan of a letter up for OCR. Image in, PNG out.
//!
//! Steps: grayscale → flatten the lighting (divide by a background estimated at 1/8 scale with a
//! grayscale closing, which removes the text, and a blur) → median denoise → deskew (the angle
//! that makes the rows of ink sharpest, searched on a small copy) → binarise (Otsu, which works
//! once the lighting is flat). The flat-field step is what rescues phone photos: a shadow across
//! the page defeats any single global threshold, Tesseract's own included.
//! The threshold is Otsu's, capped at 60 % of the paper's brightness for sparse pages.

use image::imageops::{FilterType, resize};
use image::{GrayImage, Luma};
use imageproc::contrast::{ThresholdType, otsu_level, threshold};
use imageproc::geometric_transformations::{Border, Interpolation, rotate_about_center};
use imageproc::morphology::{Mask, grayscale_close};

use crate::media::{self, Kind};
use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest};

/// Largest skew corrected, in degrees.
pub const MAX_SKEW_DEG: f32 = 8.0;

/// What the clean-up did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// The skew found and removed, in degrees (counter-clockwise positive).
    pub skew_deg: f32,
    /// The binarisation threshold used.
    pub threshold: u8,
}

/// Runs the clean-up on a grayscale image. `binarise: false` stops before the threshold.
pub fn clean(gray: &GrayImage, binarise: bool) -> (GrayImage, Report) {
    let flat = flatten(gray);
    let denoised = imageproc::filter::median_filter(&flat, 1, 1);
    let skew = estimate_skew(&denoised);
    let straight = if skew.abs() >= 0.1 {
        rotate_about_center(
            &denoised,
            (-skew).to_radians(),
            Interpolation::Bilinear,
            Border::Constant(Luma([255])),
        )
    } else {
        denoised
    };
    let level = ink_threshold(&straight);
    let out = if binarise {
        threshold(&straight, level, ThresholdType::Binary)
    } else {
        straight
    };
    (
        out,
        Report {
            skew_deg: skew,
            threshold: level,
        },
    )
}

/// Divides out uneven lighting: paper comes out white wherever it is, ink stays dark.
fn flatten(gray: &GrayImage) -> GrayImage {
    let (w, h) = gray.dimensions();
    let sw = (w / 8).max(8);
    let sh = (h / 8).max(8);
    let small = resize(gray, sw, sh, FilterType::Triangle);
    // A closing (dilate then erode) with a radius wider than a stroke fills the text in with
    // the paper around it; the blur smooths what is left into the lighting field.
    let closed = grayscale_close(&small, &Mask::disk(4));
    let bg_small = imageproc::filter::gaussian_blur_f32(&closed, 2.0);
    let bg = resize(&bg_small, w, h, FilterType::Triangle);
    let mut out = GrayImage::new(w, h);
    for ((o, p), b) in out.pixels_mut().zip(gray.pixels()).zip(bg.pixels()) {
        let b = f32::from(b.0[0]).max(16.0);
        let v = f32::from(p.0[0]) * 255.0 / b;
        o.0[0] = v.clamp(0.0, 255.0) as u8;
    }
    out
}

/// The level below which a pixel is ink. Otsu splits ink from paper on a real letter; on a
/// sparse page (a few lines of text) it would split the paper's noise instead, so the threshold
/// never rises above 60 % of the paper's brightness.
fn ink_threshold(gray: &GrayImage) -> u8 {
    otsu_level(gray).min((f32::from(paper_level(gray)) * 0.6) as u8)
}

/// The brightness of the paper: the median pixel (most of a letter is paper).
fn paper_level(gray: &GrayImage) -> u8 {
    let mut hist = [0u64; 256];
    for p in gray.pixels() {
        hist[p.0[0] as usize] += 1;
    }
    let (w, h) = gray.dimensions();
    percentile(&hist, u64::from(w) * u64::from(h), 0.5)
}

fn percentile(hist: &[u64; 256], total: u64, q: f64) -> u8 {
    let target = (total as f64 * q) as u64;
    let mut acc = 0;
    for (i, n) in hist.iter().enumerate() {
        acc += n;
        if acc > target {
            return i as u8;
        }
    }
    255
}

/// The skew of the text lines in degrees: the rotation under which the horizontal projection of
/// the ink has the largest variance (rows of text and gaps between them are sharpest).
pub fn estimate_skew(gray: &GrayImage) -> f32 {
    let (w, h) = gray.dimensions();
    let scale = (1000.0 / w.max(1) as f32).min(1.0);
    let small = resize(
        gray,
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
        FilterType::Triangle,
    );
    let level = ink_threshold(&small);
    let ink: Vec<(f32, f32)> = small
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] < level)
        .map(|(x, y, _)| (x as f32, y as f32))
        .collect();
    if ink.len() < 50 {
        return 0.0;
    }
    let (sw, sh) = small.dimensions();
    let (cx, cy) = (sw as f32 / 2.0, sh as f32 / 2.0);
    let score = |deg: f32| -> f64 {
        let (s, c) = deg.to_radians().sin_cos();
        let rows = (sw + sh) as usize * 2;
        let mut hist = vec![0u32; rows];
        for &(x, y) in &ink {
            // y' of the point rotated by -deg about the centre.
            let yr = -(x - cx) * s + (y - cy) * c + rows as f32 / 2.0;
            if yr >= 0.0 && (yr as usize) < rows {
                hist[yr as usize] += 1;
            }
        }
        hist.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
    };
    let search = |from: f32, to: f32, step: f32| -> f32 {
        let mut best = (f64::MIN, 0.0);
        let mut a = from;
        while a <= to + 1e-6 {
            let s = score(a);
            if s > best.0 {
                best = (s, a);
            }
            a += step;
        }
        best.1
    };
    let coarse = search(-MAX_SKEW_DEG, MAX_SKEW_DEG, 0.5);
    search(coarse - 0.5, coarse + 0.5, 0.05)
}

/// The `enhance` service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Enhance;

impl Service for Enhance {
    fn name(&self) -> &'static str {
        rma_proto::service::ENHANCE
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            crate::require_post(&req)?;
            media::identify(
                req.call.content_type.as_deref(),
                &req.call.body,
                &[Kind::Png, Kind::Jpeg, Kind::Tiff, Kind::Webp],
            )?;
            let binarise = req
                .call
                .query_param("binarize")
                .or(req.call.query_param("binarise"))
                != Some("false");
            let body = req.call.body.clone();
            let (png, report) = tokio::task::spawn_blocking(move || enhance_bytes(&body, binarise))
                .await
                .map_err(|e| ServiceError::Internal(format!("enhance task: {e}")))??;
            tracing::debug!(
                skew = report.skew_deg,
                threshold = report.threshold,
                "enhanced"
            );
            Ok(ServiceReply::ok(Some("image/png".into()), png.into()))
        })
    }
}

/// Enhances image bytes to PNG bytes. Blocking: call it off the async threads.
pub fn enhance_bytes(body: &[u8], binarise: bool) -> Result<(Vec<u8>, Report), ServiceError> {
    let img = media::decode(body)?;
    let (out, report) = clean(&img.to_luma8(), binarise);
    // Fast compression: the PNG goes straight to OCR (and to storage); its size matters less
    // than the time a user waits.
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    out.write_with_encoder(encoder)
        .map_err(|e| ServiceError::Internal(format!("encoding PNG: {e}")))?;
    Ok((png, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_skew_of_a_rotated_page() {
        let page = rma_fixtures::render_page(rma_fixtures::letters::COUNCIL_TAX.text, 30.0)
            .expect("render");
        for deg in [-3.0f32, 2.5] {
            let rotated = rotate_about_center(
                &page,
                deg.to_radians(),
                Interpolation::Bilinear,
                Border::Constant(Luma([255])),
            );
            let found = estimate_skew(&rotated);
            assert!((found - deg).abs() < 0.3, "rotated {deg}°, found {found}°");
        }
        assert!(estimate_skew(&page).abs() < 0.2);
    }

    #[test]
    fn flattening_whitens_the_shadowed_paper() {
        let page =
            rma_fixtures::render_page(rma_fixtures::letters::UTILITY.text, 30.0).expect("render");
        let photo = rma_fixtures::photograph(&page, 0.0, 7);
        let (w, h) = photo.dimensions();
        // Bottom-right paper is dark in the photo …
        assert!(photo.get_pixel(w - 5, h - 5).0[0] < 170);
        let (clean, report) = clean(&photo, true);
        assert!(report.skew_deg.abs() < 0.2, "{report:?}");
        // … and white after.
        assert_eq!(
            clean.get_pixel(clean.width() - 20, clean.height() - 20).0[0],
            255
        );
    }
}

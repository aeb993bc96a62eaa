//! Test documents made on the spot: realistic UK debt-advice letters rendered to page images,
//! "phone photos" of them (skewed, shadowed, noisy, JPEG), and PDFs with and without a text
//! layer. Nothing is downloaded; the font comes from Debian's `fonts-dejavu-core`.
#![deny(clippy::unwrap_used)]

pub mod corpus;
pub mod letters;
pub mod score;

use std::io::Cursor;

use ab_glyph::{FontVec, PxScale};
use image::{GrayImage, ImageFormat, Luma};
use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, dictionary};
use rand::{Rng, SeedableRng};

/// Where the test font lives (Debian package `fonts-dejavu-core`).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// A fixture could not be made.
#[derive(Debug)]
pub struct FixtureError(pub String);

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

fn font() -> Result<FontVec, FixtureError> {
    let bytes = std::fs::read(FONT_PATH).map_err(|e| {
        FixtureError(format!(
            "{FONT_PATH}: {e} (install Debian's fonts-dejavu-core)"
        ))
    })?;
    FontVec::try_from_vec(bytes).map_err(|e| FixtureError(format!("{FONT_PATH}: {e}")))
}

/// Renders text as a clean page: black on white, `px` pixel glyphs (34 px ≈ 11 pt at 220 dpi).
pub fn render_page(text: &str, px: f32) -> Result<GrayImage, FixtureError> {
    let font = font()?;
    let margin = (px * 3.0) as u32;
    let line_h = (px * 1.45) as u32;
    let lines: Vec<&str> = text.lines().collect();
    let widest = lines
        .iter()
        .map(|l| imageproc::drawing::text_size(PxScale::from(px), &font, l).0)
        .max()
        .unwrap_or(0);
    let width = (widest + 2 * margin).max(600);
    let height = (lines.len() as u32 * line_h + 2 * margin).max(400);
    let mut img = GrayImage::from_pixel(width, height, Luma([255]));
    for (i, line) in lines.iter().enumerate() {
        imageproc::drawing::draw_text_mut(
            &mut img,
            Luma([0]),
            margin as i32,
            (margin + i as u32 * line_h) as i32,
            PxScale::from(px),
            &font,
            line,
        );
    }
    Ok(img)
}

/// Makes a page look like a phone photo of a letter: rotated by `degrees`, lit unevenly (a
/// shadow falling across it), blurred a little and speckled with noise. Deterministic per `seed`.
pub fn photograph(page: &GrayImage, degrees: f32, seed: u64) -> GrayImage {
    use imageproc::geometric_transformations::{Interpolation, rotate_about_center};
    let rotated = rotate_about_center(
        page,
        degrees.to_radians(),
        Interpolation::Bilinear,
        imageproc::geometric_transformations::Border::Constant(Luma([255])),
    );
    let blurred = imageproc::filter::gaussian_blur_f32(&rotated, 0.8);
    let (w, h) = blurred.dimensions();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = GrayImage::new(w, h);
    for (x, y, p) in blurred.enumerate_pixels() {
        // Light falls off from the top-left corner to a deep shadow at the bottom right:
        // paper there is darker than ink is at the top, which defeats any global threshold.
        let fx = x as f32 / w as f32;
        let fy = y as f32 / h as f32;
        let light = 1.0 - 0.62 * (0.35 * fx + 0.65 * fy).powf(1.4);
        let noise: f32 = rng.random_range(-28.0..28.0);
        let v = p.0[0] as f32 * light + 10.0 + noise;
        out.put_pixel(x, y, Luma([v.clamp(0.0, 255.0) as u8]));
    }
    out
}

/// PNG bytes.
pub fn png(img: &GrayImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    // Writing PNG to memory cannot fail for a valid image.
    let _ = img.write_to(&mut out, ImageFormat::Png);
    out.into_inner()
}

/// JPEG bytes at `quality`.
pub fn jpeg(img: &GrayImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    let _ = enc.encode_image(img);
    out
}

/// One page of a generated PDF.
#[derive(Debug, Clone)]
pub enum PdfPage<'a> {
    /// A page with a real text layer (Helvetica, 11 pt).
    Text(&'a str),
    /// A scanned page: one JPEG image and no text at all.
    Scan(&'a GrayImage),
}

/// A PDF whose pages carry a real text layer, one string per page.
pub fn pdf_with_text(pages: &[&str]) -> Vec<u8> {
    pdf(&pages.iter().map(|t| PdfPage::Text(t)).collect::<Vec<_>>())
}

/// A PDF of scanned pages.
pub fn pdf_with_images(pages: &[GrayImage]) -> Vec<u8> {
    pdf(&pages.iter().map(PdfPage::Scan).collect::<Vec<_>>())
}

/// A PDF of text and scanned pages in any mix.
pub fn pdf(pages: &[PdfPage<'_>]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let mut kids = Vec::new();
    for page in pages {
        let (content, resources, media_box) = match page {
            PdfPage::Text(text) => {
                let mut ops = vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 11.into()]),
                    Operation::new("TL", vec![15.into()]),
                    Operation::new("Td", vec![56.into(), 780.into()]),
                ];
                for line in text.lines() {
                    // WinAnsi matches Latin-1 for £ (0xA3).
                    let bytes: Vec<u8> = line
                        .chars()
                        .map(|c| {
                            if (c as u32) < 256 {
                                c as u32 as u8
                            } else {
                                b'?'
                            }
                        })
                        .collect();
                    ops.push(Operation::new(
                        "Tj",
                        vec![Object::String(bytes, lopdf::StringFormat::Literal)],
                    ));
                    ops.push(Operation::new("T*", vec![]));
                }
                ops.push(Operation::new("ET", vec![]));
                (
                    Content { operations: ops },
                    dictionary! { "Font" => dictionary! { "F1" => font_id } },
                    vec![0.into(), 0.into(), 595.into(), 842.into()],
                )
            }
            PdfPage::Scan(img) => {
                let (w, h) = img.dimensions();
                let mut image = Stream::new(
                    dictionary! {
                        "Type" => "XObject",
                        "Subtype" => "Image",
                        "Width" => w as i64,
                        "Height" => h as i64,
                        "ColorSpace" => "DeviceGray",
                        "BitsPerComponent" => 8,
                        "Filter" => "DCTDecode",
                    },
                    jpeg(img, 90),
                );
                image.allows_compression = false;
                let image_id = doc.add_object(image);
                // An A4-wide page at the image's aspect ratio.
                let page_w = 595.0_f32;
                let page_h = page_w * h as f32 / w as f32;
                (
                    Content {
                        operations: vec![
                            Operation::new("q", vec![]),
                            Operation::new(
                                "cm",
                                vec![
                                    page_w.into(),
                                    0.into(),
                                    0.into(),
                                    page_h.into(),
                                    0.into(),
                                    0.into(),
                                ],
                            ),
                            Operation::new("Do", vec!["Im1".into()]),
                            Operation::new("Q", vec![]),
                        ],
                    },
                    dictionary! { "XObject" => dictionary! { "Im1" => image_id } },
                    vec![
                        0.into(),
                        0.into(),
                        Object::Real(page_w),
                        Object::Real(page_h),
                    ],
                )
            }
        };
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            content.encode().unwrap_or_default(),
        ));
        let resources_id = doc.add_object(resources);
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
            "Resources" => resources_id,
            "MediaBox" => media_box,
        });
        kids.push(page_id.into());
    }
    finish(doc, pages_id, kids)
}

fn finish(mut doc: Document, pages_id: lopdf::ObjectId, kids: Vec<Object>) -> Vec<u8> {
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    let _ = doc.save_to(&mut out);
    out
}

/// A decompression bomb: a valid PNG of a few dozen bytes whose header claims `width` ×
/// `height` pixels (a real one would carry megabytes that inflate to gigabytes).
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 0, 0, 0, 0]);
    let crc = crc32(&png[12..29]);
    png.extend_from_slice(&crc.to_be_bytes());
    let idat: &[u8] = b"IDATx\x9c\x03\x00\x00\x00\x00\x01";
    png.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32(idat).to_be_bytes());
    png
}

/// CRC-32 (IEEE), as PNG chunks use.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Character accuracy of `got` against `expected`: 1 − edit distance / expected length, after
/// collapsing whitespace runs to one space on both.
pub fn char_accuracy(expected: &str, got: &str) -> f64 {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let e: Vec<char> = norm(expected).chars().collect();
    let g: Vec<char> = norm(got).chars().collect();
    if e.is_empty() {
        return if g.is_empty() { 1.0 } else { 0.0 };
    }
    let mut prev: Vec<usize> = (0..=g.len()).collect();
    let mut cur = vec![0; g.len() + 1];
    for i in 1..=e.len() {
        cur[0] = i;
        for j in 1..=g.len() {
            let sub = prev[j - 1] + usize::from(e[i - 1] != g[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    1.0 - prev[g.len()] as f64 / e.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_measures_edits() {
        assert_eq!(char_accuracy("abcd", "abcd"), 1.0);
        assert_eq!(char_accuracy("abcd", "abxd"), 0.75);
        assert_eq!(char_accuracy("a  b\nc", "a b c"), 1.0);
        assert_eq!(char_accuracy("", ""), 1.0);
    }

    #[test]
    fn pdfs_start_like_pdfs() {
        assert!(pdf_with_text(&["hello"]).starts_with(b"%PDF-1.5"));
        let img = GrayImage::from_pixel(10, 10, Luma([200]));
        assert!(pdf_with_images(&[img]).starts_with(b"%PDF-1.5"));
    }
}

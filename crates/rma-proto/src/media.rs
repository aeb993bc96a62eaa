//! Document kinds read from magic bytes, shared by the services (which check what they are
//! sent) and the coordinator (which plans the `process` pipeline from it).

/// Document kinds the services read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// TIFF.
    Tiff,
    /// WebP.
    Webp,
    /// PDF.
    Pdf,
}

impl Kind {
    /// The media type.
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Tiff => "image/tiff",
            Kind::Webp => "image/webp",
            Kind::Pdf => "application/pdf",
        }
    }

    /// Whether it is an image.
    pub fn is_image(self) -> bool {
        self != Kind::Pdf
    }
}

/// Reads the kind from magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(Kind::Jpeg)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some(Kind::Tiff)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Kind::Webp)
    } else if bytes
        .get(..1024)
        .unwrap_or(bytes)
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        // The PDF header may follow a little junk; readers accept it in the first 1 KB.
        Some(Kind::Pdf)
    } else {
        None
    }
}

/// The media type of a Content-Type header, lowercased, without parameters.
pub fn essence(content_type: Option<&str>) -> Option<String> {
    content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Uploads are sniffed before anything else reads them: any bytes, any header.
        #[test]
        fn sniffing_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048), ct in ".{0,80}") {
            let _ = sniff(&bytes);
            let _ = essence(Some(&ct));
        }
    }

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(Kind::Png));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some(Kind::Jpeg));
        assert_eq!(sniff(b"II*\0...."), Some(Kind::Tiff));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Kind::Webp));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some(Kind::Pdf));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(
            essence(Some("Text/Plain; charset=utf-8")).as_deref(),
            Some("text/plain")
        );
    }
}

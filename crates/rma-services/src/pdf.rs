//! PDF work through Poppler's command-line tools (`pdfinfo`, `pdftotext`, `pdftoppm`, from
//! Debian's `poppler-utils`): they read every PDF we tried, where the pure-Rust text extractors
//! ran lines together or dropped some. One process per document (text) or per page (render);
//! OCR itself stays in the loaded engines.

use std::time::Duration;

use tokio::process::Command;

use crate::ServiceError;
use crate::media::MAX_PDF_PAGES;

/// Longest a Poppler tool may run on one call.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Resolution pages are rendered at for OCR.
pub(crate) const RENDER_DPI: u32 = 300;

/// A PDF written to a temporary file for the tools to read; removed on drop.
pub(crate) struct PdfFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// Number of pages.
    pub pages: u32,
}

impl PdfFile {
    /// Writes `bytes` out and reads the page count; refuses more than [`MAX_PDF_PAGES`].
    pub(crate) async fn open(bytes: &[u8]) -> Result<PdfFile, ServiceError> {
        let dir =
            tempfile::tempdir().map_err(|e| ServiceError::Internal(format!("temp dir: {e}")))?;
        let path = dir.path().join("doc.pdf");
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|e| ServiceError::Internal(format!("writing the PDF: {e}")))?;
        let info = run("pdfinfo", &[path.as_os_str()]).await?;
        let pages = parse_pages(&String::from_utf8_lossy(&info))
            .ok_or_else(|| ServiceError::BadInput("the PDF has no readable page count".into()))?;
        if pages == 0 {
            return Err(ServiceError::BadInput("the PDF has no pages".into()));
        }
        if pages > MAX_PDF_PAGES {
            return Err(ServiceError::TooLarge(format!(
                "the PDF has {pages} pages, over the limit of {MAX_PDF_PAGES}"
            )));
        }
        Ok(PdfFile {
            _dir: dir,
            path,
            pages,
        })
    }

    /// The text layer, one string per page (empty for pages without one).
    pub(crate) async fn text(&self) -> Result<Vec<String>, ServiceError> {
        let out = run(
            "pdftotext",
            &[
                "-layout".as_ref(),
                "-enc".as_ref(),
                "UTF-8".as_ref(),
                self.path.as_os_str(),
                "-".as_ref(),
            ],
        )
        .await?;
        let text = String::from_utf8_lossy(&out);
        let mut pages: Vec<String> = text
            .split('\x0c')
            .map(|p| p.trim_end().to_owned())
            .collect();
        pages.resize(self.pages as usize, String::new());
        Ok(pages)
    }

    /// Renders page `n` (1-based) to a grayscale PNG at [`RENDER_DPI`].
    pub(crate) async fn render(&self, n: u32) -> Result<Vec<u8>, ServiceError> {
        let prefix = self.path.with_file_name(format!("page-{n}"));
        let n_s = n.to_string();
        let dpi = RENDER_DPI.to_string();
        run(
            "pdftoppm",
            &[
                "-r".as_ref(),
                dpi.as_ref(),
                "-gray".as_ref(),
                "-png".as_ref(),
                "-singlefile".as_ref(),
                "-f".as_ref(),
                n_s.as_ref(),
                "-l".as_ref(),
                n_s.as_ref(),
                self.path.as_os_str(),
                prefix.as_os_str(),
            ],
        )
        .await?;
        let png = prefix.with_extension("png");
        let bytes = tokio::fs::read(&png)
            .await
            .map_err(|e| ServiceError::Internal(format!("reading rendered page {n}: {e}")))?;
        let _ = tokio::fs::remove_file(&png).await;
        Ok(bytes)
    }
}

fn parse_pages(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|v| v.trim().parse().ok())
}

async fn run(tool: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, ServiceError> {
    let child = Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(TOOL_TIMEOUT, child).await {
        Err(_) => {
            return Err(ServiceError::Internal(format!(
                "{tool} took longer than {} s",
                TOOL_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ServiceError::Internal(format!(
                "{tool} is not installed on this worker (Debian package poppler-utils)"
            )));
        }
        Ok(Err(e)) => return Err(ServiceError::Internal(format!("running {tool}: {e}"))),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(ServiceError::BadInput(format!(
            "the PDF could not be read ({tool}: {first})"
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_count_from_pdfinfo() {
        assert_eq!(
            parse_pages("Producer: x\nPages:          12\nEncrypted: no\n"),
            Some(12)
        );
        assert_eq!(parse_pages("nothing"), None);
    }

    #[tokio::test]
    async fn text_layer_per_page() {
        let pdf = rma_fixtures::pdf_with_text(&["First page £12.50", "Second page"]);
        let f = PdfFile::open(&pdf).await.expect("open");
        assert_eq!(f.pages, 2);
        let t = f.text().await.expect("text");
        assert!(t[0].contains("First page £12.50"), "{t:?}");
        assert!(t[1].contains("Second page"));
    }

    #[tokio::test]
    async fn garbage_is_a_clear_400() {
        let err = PdfFile::open(b"%PDF-1.4 not really")
            .await
            .err()
            .expect("refused");
        assert_eq!(err.status(), 400, "{err}");
    }
}

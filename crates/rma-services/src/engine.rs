//! The OCR engine pool: one Tesseract engine per thread, loaded once and kept. Each pool thread
//! owns its engines (one per language asked for) and takes pages from a shared queue, so the
//! ~125 ms engine start is paid once per thread, not once per page.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::ServiceError;

pub use rma_proto::results::Word;

/// The result of one page.
#[derive(Debug, Clone)]
pub struct PageText {
    /// The text, lines separated by `\n`.
    pub text: String,
    /// Mean word confidence, 0–100.
    pub confidence: f32,
    /// Word boxes, when asked for.
    pub words: Option<Vec<Word>>,
}

struct Job {
    image: Vec<u8>,
    lang: String,
    boxes: bool,
    /// Tesseract's page segmentation mode.
    psm: &'static str,
    reply: oneshot::Sender<Result<PageText, ServiceError>>,
}

/// How Tesseract finds the text on a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Automatic page segmentation (mode 3, as the `tesseract` command): blocks, columns,
    /// pictures. Fast on photos with a background around the page.
    #[default]
    Auto,
    /// The page is one block of text (mode 6): slow on a raw photo, but it keeps lines that
    /// automatic segmentation drops on a cleaned, flattened page.
    Block,
}

impl Layout {
    fn psm(self) -> &'static str {
        match self {
            Layout::Auto => "3",
            Layout::Block => "6",
        }
    }
}

/// A pool of Tesseract engines on dedicated threads.
#[derive(Clone)]
pub struct OcrPool {
    tx: std_mpsc::Sender<Job>,
    threads: usize,
}

impl std::fmt::Debug for OcrPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrPool")
            .field("threads", &self.threads)
            .finish()
    }
}

/// Languages Tesseract has data for on this machine (from its tessdata directories).
pub fn installed_languages() -> Vec<String> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("TESSDATA_PREFIX") {
        dirs.push(p.into());
    }
    for d in [
        "/usr/share/tesseract-ocr/5/tessdata",
        "/usr/share/tesseract-ocr/4.00/tessdata",
        "/usr/share/tessdata",
        "/usr/local/share/tessdata",
    ] {
        dirs.push(d.into());
    }
    let mut langs: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".traineddata")
                .map(str::to_owned)
        })
        .filter(|l| l != "osd")
        .collect();
    langs.sort();
    langs.dedup();
    langs
}

/// Checks a `lang` parameter: Tesseract's `eng` or `eng+fra` form, every part installed.
pub fn check_lang(lang: &str, installed: &[String]) -> Result<(), ServiceError> {
    let ok_chars = !lang.is_empty()
        && lang.len() <= 64
        && lang
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'+');
    if !ok_chars {
        return Err(ServiceError::BadInput(format!(
            "lang {lang:?} is not a Tesseract language code like eng or eng+fra"
        )));
    }
    for part in lang.split('+') {
        if !installed.iter().any(|l| l == part) {
            return Err(ServiceError::BadInput(format!(
                "language {part:?} is not installed on this worker (installed: {})",
                installed.join(", ")
            )));
        }
    }
    Ok(())
}

impl OcrPool {
    /// Starts `threads` engine threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = std_mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rma-ocr-{i}"))
                .spawn(move || engine_thread(rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an OCR thread");
            }
        }
        OcrPool { tx, threads }
    }

    /// Loads `lang` on every engine thread ahead of the first page (about 0.2 s of CPU each),
    /// when its data is installed; errors surface later, on a real page.
    pub fn warm(&self, lang: &str) {
        if !installed_languages().iter().any(|l| l == lang) {
            return;
        }
        for _ in 0..self.threads {
            let (reply, _rx) = oneshot::channel();
            let _ = self.tx.send(Job {
                image: Vec::new(),
                lang: lang.to_owned(),
                boxes: false,
                psm: "3",
                reply,
            });
        }
    }

    /// How many engines run in parallel.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Recognises one page image (PNG, JPEG or TIFF bytes), finding its layout.
    pub async fn recognise(
        &self,
        image: Vec<u8>,
        lang: &str,
        boxes: bool,
    ) -> Result<PageText, ServiceError> {
        self.recognise_with(image, lang, boxes, Layout::Auto).await
    }

    /// Recognises one page image with the given layout analysis.
    pub async fn recognise_with(
        &self,
        image: Vec<u8>,
        lang: &str,
        boxes: bool,
        layout: Layout,
    ) -> Result<PageText, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                image,
                lang: lang.to_owned(),
                boxes,
                psm: layout.psm(),
                reply,
            })
            .map_err(|_| ServiceError::Internal("the OCR engines have stopped".into()))?;
        rx.await.map_err(|_| {
            ServiceError::Internal("an OCR engine stopped while reading the page".into())
        })?
    }
}

fn engine_thread(rx: Arc<Mutex<std_mpsc::Receiver<Job>>>) {
    let mut engines: HashMap<String, leptess::LepTess> = HashMap::new();
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(j) => j,
                Err(_) => return, // the pool is gone
            }
        };
        let result = run_job(&mut engines, &job);
        let _ = job.reply.send(result);
    }
}

fn run_job(
    engines: &mut HashMap<String, leptess::LepTess>,
    job: &Job,
) -> Result<PageText, ServiceError> {
    if !engines.contains_key(&job.lang) {
        let engine = leptess::LepTess::new(None, &job.lang).map_err(|e| {
            ServiceError::BadInput(format!(
                "Tesseract cannot load language {:?}: {e}",
                job.lang
            ))
        })?;
        engines.insert(job.lang.clone(), engine);
    }
    let Some(engine) = engines.get_mut(&job.lang) else {
        return Err(ServiceError::Internal("engine vanished".into()));
    };
    if job.image.is_empty() {
        // A warm-up: the engine is loaded, nothing to read.
        return Err(ServiceError::BadInput("no image".into()));
    }
    // Automatic page segmentation unless asked otherwise. The library's default reads the page
    // as one block of text: on a phone photo (a table around the page, a shadow) that took
    // 3.4 s instead of 0.6 s.
    engine
        .set_variable(leptess::Variable::TesseditPagesegMode, job.psm)
        .map_err(|_| ServiceError::Internal("Tesseract refused a page segmentation mode".into()))?;
    engine
        .set_image_from_mem(&job.image)
        .map_err(|e| ServiceError::BadInput(format!("Leptonica could not read the image: {e}")))?;
    // Phone photos rarely carry a resolution; Tesseract guesses badly without one.
    if engine.get_source_y_resolution() < 70 {
        engine.set_source_resolution(300);
    }
    if engine.recognize() != 0 {
        return Err(ServiceError::Internal(
            "Tesseract failed to recognise the page".into(),
        ));
    }
    let text = engine
        .get_utf8_text()
        .map_err(|e| ServiceError::Internal(format!("Tesseract returned invalid UTF-8: {e}")))?;
    let confidence = engine.mean_text_conf().max(0) as f32;
    let words = if job.boxes {
        let tsv = engine.get_tsv_text(0).map_err(|e| {
            ServiceError::Internal(format!("Tesseract returned invalid UTF-8: {e}"))
        })?;
        Some(parse_tsv(&tsv))
    } else {
        None
    };
    Ok(PageText {
        text: tidy(&text),
        confidence,
        words,
    })
}

/// Trims trailing spaces and collapses runs of blank lines.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

/// Words from Tesseract's TSV (level 5 rows).
pub fn parse_tsv(tsv: &str) -> Vec<Word> {
    tsv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 12 || f[0] != "5" {
                return None;
            }
            let text = f[11].trim();
            if text.is_empty() {
                return None;
            }
            Some(Word {
                text: text.to_owned(),
                confidence: f[10].parse().ok()?,
                x: f[6].parse().ok()?,
                y: f[7].parse().ok()?,
                w: f[8].parse().ok()?,
                h: f[9].parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_words() {
        let tsv = "1\t1\t0\t0\t0\t0\t0\t0\t100\t50\t-1\t\n5\t1\t1\t1\t1\t1\t10\t20\t30\t12\t96.5\tHello\n5\t1\t1\t1\t1\t2\t45\t20\t40\t12\t91\tworld\n";
        let w = parse_tsv(tsv);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].text, "Hello");
        assert_eq!((w[1].x, w[1].y, w[1].w, w[1].h), (45, 20, 40, 12));
    }

    #[test]
    fn languages_are_checked() {
        let installed = vec!["eng".to_owned(), "fra".to_owned()];
        assert!(check_lang("eng", &installed).is_ok());
        assert!(check_lang("eng+fra", &installed).is_ok());
        assert_eq!(check_lang("deu", &installed).expect_err("x").status(), 400);
        assert_eq!(
            check_lang("../etc", &installed).expect_err("x").status(),
            400
        );
    }

    #[test]
    fn tidy_collapses_blank_runs() {
        assert_eq!(tidy("a  \n\n\n\nb\n"), "a\n\nb");
    }
}

//! Writes a generated test document, for tests outside Rust (the browser tests).
//!
//! `rma-fixture LETTER OUT [--photo]` where LETTER is one of council-tax, universal-credit,
//! debt-collection, county-court, bank-statement, utility and OUT ends in .png, .jpg or .pdf.
//!
//! `rma-fixture corpus DIR [--count N] [--held-out N]` writes the extraction corpus (issue 10):
//! one image per letter and `truth.json` with every letter's ground truth.

use std::process::ExitCode;

use rma_fixtures::{jpeg, letters, pdf_with_images, photograph, png, render_page};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("corpus") {
        return corpus(&args[1..]);
    }
    let (Some(name), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: rma-fixture LETTER OUT.{{png,jpg,pdf}} [--photo]");
        return ExitCode::from(2);
    };
    let photo = args.iter().any(|a| a == "--photo");
    let Some(letter) = letters::ALL
        .iter()
        .chain(letters::EXTRA.iter())
        .find(|l| l.name.starts_with(&name.replace('-', " ")))
    else {
        let names: Vec<String> = letters::ALL
            .iter()
            .chain(letters::EXTRA.iter())
            .map(|l| l.name.replace(' ', "-"))
            .collect();
        eprintln!(
            "error: unknown letter {name:?}; one of {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let page = match render_page(letter.text, 34.0) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let page = if photo {
        photograph(&page, 2.0, 1)
    } else {
        page
    };
    let bytes = if out.ends_with(".png") {
        png(&page)
    } else if out.ends_with(".jpg") || out.ends_with(".jpeg") {
        jpeg(&page, 85)
    } else if out.ends_with(".pdf") {
        pdf_with_images(&[page])
    } else {
        eprintln!("error: OUT must end in .png, .jpg or .pdf");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::write(out, bytes) {
        eprintln!("error: cannot write {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn corpus(args: &[String]) -> ExitCode {
    use rma_fixtures::corpus::{Fonts, HELD_OUT_SEED, TUNE_SEED, letter};
    let Some(dir) = args.first().filter(|a| !a.starts_with("--")) else {
        eprintln!("usage: rma-fixture corpus DIR [--count 180] [--held-out 60]");
        return ExitCode::from(2);
    };
    let number = |flag: &str, default: usize| -> Result<usize, String> {
        match args.iter().position(|a| a == flag) {
            None => Ok(default),
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .filter(|n| *n <= 10_000)
                .ok_or_else(|| format!("{flag} takes a number of letters up to 10000")),
        }
    };
    let (count, held_out) = match (number("--count", 180), number("--held-out", 60)) {
        (Ok(c), Ok(h)) => (c, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let fonts = match Fonts::load() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create {dir}: {e}");
        return ExitCode::FAILURE;
    }
    let parts = [(TUNE_SEED, false, count), (HELD_OUT_SEED, true, held_out)];
    let mut truths = Vec::new();
    for (seed, is_held_out, n) in parts {
        for i in 0..n {
            let g = match letter(&fonts, seed, is_held_out, i) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let path = format!("{dir}/{}.{}", g.truth.id, g.ext);
            if let Err(e) = std::fs::write(&path, &g.bytes) {
                eprintln!("error: cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
            let mut t = serde_json::to_value(&g.truth).unwrap_or_default();
            t["file"] = format!("{}.{}", g.truth.id, g.ext).into();
            truths.push(t);
            if truths.len() % 20 == 0 {
                eprintln!("{} letters written", truths.len());
            }
        }
    }
    let path = format!("{dir}/truth.json");
    let json = serde_json::to_vec_pretty(&truths).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, json) {
        eprintln!("error: cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("{} letters and truth.json in {dir}", truths.len());
    ExitCode::SUCCESS
}

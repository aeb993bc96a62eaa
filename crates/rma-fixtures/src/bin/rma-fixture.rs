//! Writes a generated test document, for tests outside Rust (the browser tests).
//!
//! `rma-fixture LETTER OUT [--photo]` where LETTER is one of council-tax, universal-credit,
//! debt-collection, county-court, bank-statement, utility and OUT ends in .png, .jpg or .pdf.

use std::process::ExitCode;

use rma_fixtures::{jpeg, letters, pdf_with_images, photograph, png, render_page};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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

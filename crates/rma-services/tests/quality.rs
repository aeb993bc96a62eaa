//! OCR quality on generated letters, through the real Tesseract engines: clean renders must read
//! at ≥ 95 % character accuracy, and on phone photos `enhance` must beat reading the photo as is.

use rma_fixtures::{char_accuracy, jpeg, letters, photograph, png, render_page};
use rma_services::engine::OcrPool;
use rma_services::enhance::enhance_bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_renders_read_at_95_percent() {
    let pool = OcrPool::new(2);
    for l in letters::ALL {
        let page = render_page(l.text, 34.0).expect("render");
        let text = pool
            .recognise(png(&page), "eng", false)
            .await
            .expect("ocr")
            .text;
        let acc = char_accuracy(l.text, &text);
        eprintln!("{:28} clean render: {:.1} %", l.name, acc * 100.0);
        assert!(acc >= 0.95, "{}: {:.1} %\n{text}", l.name, acc * 100.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhance_beats_raw_ocr_on_phone_photos() {
    let pool = OcrPool::new(2);
    let (mut raw_sum, mut enh_sum, mut n) = (0.0, 0.0, 0.0);
    for (i, l) in letters::ALL.iter().enumerate() {
        let page = render_page(l.text, 34.0).expect("render");
        let photo = jpeg(&photograph(&page, 2.5, i as u64), 80);
        let raw = pool
            .recognise(photo.clone(), "eng", false)
            .await
            .expect("ocr")
            .text;
        let (clean, report) = enhance_bytes(&photo, true).expect("enhance");
        let enhanced = pool.recognise(clean, "eng", false).await.expect("ocr").text;
        let (a, b) = (
            char_accuracy(l.text, &raw),
            char_accuracy(l.text, &enhanced),
        );
        eprintln!(
            "{:28} photo: raw {:5.1} % → enhanced {:5.1} % (skew found {:.2}°)",
            l.name,
            a * 100.0,
            b * 100.0,
            report.skew_deg
        );
        raw_sum += a;
        enh_sum += b;
        n += 1.0;
    }
    let (raw, enh) = (raw_sum / n, enh_sum / n);
    eprintln!(
        "mean over {n} photos: raw {:.1} % → enhanced {:.1} %",
        raw * 100.0,
        enh * 100.0
    );
    assert!(
        enh > raw + 0.05,
        "enhance must measurably help: raw {raw:.3}, enhanced {enh:.3}"
    );
    assert!(enh >= 0.90, "enhanced photos read at ≥ 90 %: {enh:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn timing() {
    let pool = OcrPool::new(1);
    let page = render_page(letters::COUNCIL_TAX.text, 34.0).expect("render");
    eprintln!("page {:?}", page.dimensions());
    let bytes = png(&page);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        pool.recognise(bytes.clone(), "eng", false)
            .await
            .expect("ocr");
        eprintln!("ocr {:?}", t.elapsed());
    }
    let photo = jpeg(&photograph(&page, 2.5, 1), 80);
    let t = std::time::Instant::now();
    let (clean, _) = enhance_bytes(&photo, true).expect("enhance");
    eprintln!("enhance {:?}", t.elapsed());
    let t = std::time::Instant::now();
    pool.recognise(photo, "eng", false).await.expect("ocr");
    eprintln!("ocr raw photo {:?}", t.elapsed());
    let t = std::time::Instant::now();
    pool.recognise(clean, "eng", false).await.expect("ocr");
    eprintln!("ocr clean photo {:?}", t.elapsed());
}

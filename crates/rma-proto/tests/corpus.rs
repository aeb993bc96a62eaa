//! The seed corpus of the network parsers, kept in the repository (`tests/corpus/`): every
//! frame and string a past bug or an edge of the format suggested. Each is parsed on every
//! run; the property tests beside each parser generate the rest. Add a file here when a parser
//! ever misbehaves on an input.

use std::path::Path;

use rma_proto::ServiceCall;
use rma_proto::link::{self, LinkMessage};

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_link_frame_of_the_corpus_decodes_or_is_refused() {
    let frames = corpus("link");
    assert!(frames.len() >= 10, "the corpus is there");
    for (name, bytes) in frames {
        let decoded = link::decode_bytes(&bytes::Bytes::from(bytes.clone()));
        // A hello of protocol 1 is a well-formed frame; the session refuses its version.
        let valid = [
            "hello",
            "hello-v1",
            "challenge",
            "request",
            "response",
            "progress",
            "goodbye",
        ]
        .iter()
        .any(|k| name == format!("{k}.bin"));
        assert_eq!(decoded.is_ok(), valid, "{name}: {decoded:?}");
        if let Ok(LinkMessage::Request { call, .. }) = &decoded {
            assert_eq!(
                &call.body[..],
                b"\x89PNG\r\n\x1a\n",
                "the body follows the header"
            );
        }
    }
}

#[test]
fn every_string_of_the_corpus_is_read_without_a_panic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/strings.txt");
    let text = std::fs::read_to_string(path).expect("corpus");
    for line in text.lines() {
        let _ = rma_proto::ids::job_coordinator(line);
        let _ = rma_proto::ids::validate(line);
        let call = ServiceCall {
            query: line.to_owned(),
            ..Default::default()
        };
        let _ = call.query_param("verify");
        let _ = rma_proto::service::url_path(line, line, line);
        let _ = rma_proto::media::essence(Some(line));
        let _ = serde_json::from_str::<rma_proto::api::WorkerRegister>(line);
    }
    assert_eq!(
        rma_proto::ids::job_coordinator("coord-a-j0123456789abcdef0123456789abcdef"),
        Some("coord-a")
    );
}

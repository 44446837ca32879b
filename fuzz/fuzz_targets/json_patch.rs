//! JSON patches (RFC 6902) with the apiserver's bounds: never a panic, never more than the
//! copy limit added to the document.
#![no_main]

#[path = "common.rs"]
mod common;

use apiserver::patch::{PatchType, apply, encoded_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut live, body) = common::split(data);
    let before = encoded_len(&live, usize::MAX);
    if apply(PatchType::Json, &mut live, body).is_ok() {
        let after = encoded_len(&live, usize::MAX);
        // Only copies can grow a document by more than the body, and they are bounded.
        assert!(after <= before + 4 * body.len() + apiserver::patch::MAX_JSON_PATCH_COPY_BYTES + 64);
    }
});

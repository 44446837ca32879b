//! JSON merge patches (RFC 7386): never a panic, and applying one twice changes nothing
//! more (merge patches are idempotent).
#![no_main]

#[path = "common.rs"]
mod common;

use apiserver::patch::{PatchType, apply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut live, body) = common::split(data);
    if apply(PatchType::Merge, &mut live, body).is_ok() {
        let once = live.clone();
        assert!(apply(PatchType::Merge, &mut live, body).is_ok());
        assert_eq!(live, once, "a merge patch applied twice");
    }
});

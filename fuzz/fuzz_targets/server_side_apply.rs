//! Server-side apply of an arbitrary configuration onto a live object by two managers:
//! never a panic, and an apply that succeeded, repeated by the same manager, succeeds.
#![no_main]

#[path = "common.rs"]
mod common;

use apiserver::managed::apply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (live, body) = common::split(data);
    let Ok(applied) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    if let Ok(once) = apply(&live, &applied, "alice", "v1", false, false) {
        assert!(apply(&once, &applied, "alice", "v1", false, false).is_ok(), "the same apply again conflicts");
        let _ = apply(&once, &applied, "bob", "v1", false, false);
        let _ = apply(&once, &applied, "bob", "v1", true, false);
    }
});

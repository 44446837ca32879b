//! Strategic merge patches with every directive: never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use apiserver::patch::{PatchType, apply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut live, body) = common::split(data);
    let _ = apply(PatchType::Strategic, &mut live, body);
});

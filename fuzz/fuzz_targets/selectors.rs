//! Label and field selectors as they come in query strings: never a panic, parsing or
//! matching.
#![no_main]

use std::collections::BTreeMap;

use apiserver::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = FieldSelector::parse(text, &|f| f == "metadata.name" || f == "spec.nodeName");
    let Ok(selector) = LabelSelector::parse(text) else { return };
    let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "front"), ("a", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = selector.matches(&labels);
});

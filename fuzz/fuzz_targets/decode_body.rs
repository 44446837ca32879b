//! Request bodies in every content type the apiserver decodes: JSON, YAML, protobuf; and the
//! duplicate-field scan Strict validation runs over JSON bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ct in ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"] {
        let _ = apiserver::decode::decode_body(ct, data);
    }
    let _ = apiserver::decode::duplicate_fields(data);
});

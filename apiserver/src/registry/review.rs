//! The review kinds: a question asked and answered in one `create`, never stored
//! (`SelfSubjectReview`: who am I). The answers come from `api::review`.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;

use super::{Resource, Strategy};

pub fn resources() -> Vec<Resource> {
    let mut self_subject = Resource::of::<SelfSubjectReview>(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        Review,
    );
    self_subject.namespaced = false;
    vec![self_subject]
}

struct Review;

impl Strategy for Review {
    fn reviews(&self) -> bool {
        true
    }
}

//! The review kinds: a question asked and answered in one `create`, never stored
//! (`SelfSubjectReview`: who am I; `SelfSubjectAccessReview`: may I; `SubjectAccessReview`
//! and `LocalSubjectAccessReview`: may they; `SelfSubjectRulesReview`: what may I). The
//! answers come from `api::review`.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};

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
    let cluster = |mut r: Resource| {
        r.namespaced = false;
        r
    };
    const AUTHZ: &str = "authorization.k8s.io";
    vec![
        self_subject,
        cluster(Resource::of::<TokenReview>(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "tokenreview",
            "TokenReview",
            Review,
        )),
        cluster(Resource::of::<SelfSubjectAccessReview>(
            AUTHZ,
            "v1",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            "SelfSubjectAccessReview",
            Review,
        )),
        cluster(Resource::of::<SelfSubjectRulesReview>(
            AUTHZ,
            "v1",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            "SelfSubjectRulesReview",
            Review,
        )),
        cluster(Resource::of::<SubjectAccessReview>(
            AUTHZ,
            "v1",
            "subjectaccessreviews",
            "subjectaccessreview",
            "SubjectAccessReview",
            Review,
        )),
        Resource::of::<LocalSubjectAccessReview>(
            AUTHZ,
            "v1",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
            "LocalSubjectAccessReview",
            Review,
        ),
    ]
}

struct Review;

impl Strategy for Review {
    fn reviews(&self) -> bool {
        true
    }
}

//! kube-apiserver: the Kubernetes REST and watch API over etcd or an embedded store.
//!
//! Layers, from the wire in: [`api`] parses URLs into [`registry`] rows and runs the
//! generic verb handlers; reads come from the [`cache`] or [`store`]; objects are checked by
//! [`object`], [`defaults`] and [`validation`]; [`patch`] applies the patch formats and
//! [`managed`] tracks field ownership for server-side apply;
//! [`server`] wires it together.

pub mod api;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap_token;
pub mod cache;
pub mod convert;
pub mod decode;
pub mod defaults;
pub mod encryption;
pub mod limits;
pub mod managed;
pub mod meta;
pub mod metrics;
pub mod names;
pub mod patch;
pub mod protobuf;
pub mod query;
pub mod registry;
pub mod selector;
pub mod serve;
pub mod server;
pub mod serviceaccount;
pub mod status;
pub mod store;
pub mod structural;
pub mod validation;

#[cfg(test)]
mod fuzz;

pub use server::{AuthorizationMode, Config, Server, start};

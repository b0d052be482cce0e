//! etcd v3's gRPC API (packages `etcdserverpb`, `mvccpb`, `authpb`), generated ONCE by
//! scripts/gen-etcd-api.sh with tonic-prost-build (client side only) and committed, so that a
//! fresh `cargo build` needs nothing but cargo: no protoc, no build script (docs/cluster.md).
//! Never edit these files by hand; regenerate them, and check with `CHECK=1` that the committed
//! output is byte-identical to what the script produces.
//!
//! The modules keep etcd's package names: the generated code refers to its siblings as
//! `super::mvccpb` and `super::authpb`.

// Generated code: we use a fraction of the API, and its style is prost's, not ours.
#![allow(dead_code, clippy::all, clippy::pedantic, rustdoc::all, missing_docs)]

pub mod authpb;
pub mod etcdserverpb;
pub mod mvccpb;

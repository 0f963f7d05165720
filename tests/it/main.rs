//! The integration tests: one binary, a module per behaviour. Each test
//! starts the real `echod` (or a tool from the workspace) on port 0, reads
//! its addresses from the `listening on` lines and kills it by PID on drop
//! (see [`common::Daemon`]). `tests/no_alloc.rs` is its own binary because
//! it installs a counting global allocator.

mod common;

mod backpressure;
mod banner_once;
mod bulk;
mod client;
mod echo_integrity;
mod embedded;
mod exit_codes;
mod faults;
mod fd_exhaustion;
mod framed;
mod half_close;
mod idle_timeout;
mod k8s;
mod load_generator;
mod load_generator_features;
mod many_clients;
mod max_connections;
mod memory_budget;
mod metrics;
mod proxy_protocol;
mod real_tools;
mod reset;
mod scale_out;
mod seeds_clients;
mod signals;
mod soak;
mod sockperf;
mod systemd;
mod udp;
mod workers;

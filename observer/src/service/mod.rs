//! The recorder as a service: its configuration file ([`config`]), the fleet export on
//! `/metrics` ([`metrics`]), and systemd's notification protocol ([`notify`]).

pub(crate) mod config;
pub(crate) mod metrics;
pub(crate) mod notify;

//! One home per command, where its loop lives: [`watch`] (the ad-hoc mode), [`record`] (the
//! service), [`report`] and [`timeline`] (reading the history). Each takes plain settings from
//! the flag layer and drives the stages.

pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod timeline;
pub(crate) mod watch;

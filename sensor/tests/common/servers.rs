//! The real servers of `testkit`, and the sensor binary these tests run.

#![allow(unused_imports)]

use std::path::PathBuf;

pub use testkit::servers::*;

/// Path of the `sensor` binary built for the integration tests.
pub fn sensor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sensor"))
}

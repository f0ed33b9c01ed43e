//! Test support shared by the workspace's integration tests: real ClickHouse and NATS servers
//! started as child processes on free loopback ports (never mocks), and the TLS material they
//! need. A dev-dependency only; nothing here ships.

pub mod chdb;
pub mod cluster;
pub mod console;
pub mod live;
pub mod servers;

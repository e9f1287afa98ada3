//! cardcore's load harness as a library: the `cardcore-load` binary is a
//! thin command line over it, and the end-to-end test drives it in-process.
//!
//! Load goes to a loopback address only.

pub mod baseline;
pub mod driver;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seedfile;
pub mod table;

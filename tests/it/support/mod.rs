//! The harness every test module shares: real, throwaway servers
//! ([`servers`]), the service under test as a child process or in-process
//! ([`app`]), and HTTP clients and load ([`load`]). Everything is
//! re-exported here, so a test names `support::App` or `support::load`.

pub mod app;
pub mod load;
pub mod nginx;
pub mod servers;

pub use app::*;
pub use load::*;
pub use nginx::*;
pub use servers::*;

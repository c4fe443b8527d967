//! `ssed-testkit`: the client side that ssed's tests, load tool and soak
//! share. Not published; it knows nothing of the `ssed` crate and talks
//! to any server over plain sockets, as a browser or `curl` would.
//!
//! # Layout
//!
//! In the order a client meets them:
//!
//! - [`net`]: blocking `connect` with a deadline and timeouts; the address
//!   in ssed's `listening on http://ADDR` log line.
//! - [`http`]: response heads via `httparse` (status, headers, how the
//!   body is framed); `find` for byte strings.
//! - [`chunked`]: the chunked transfer coding, undone as bytes arrive.
//! - [`sse`]: the one event-stream client parser: head, framing and WHATWG
//!   lines in one pass; borrowed lines for speed, owned events for tests.
//! - [`json`]: a number or a string out of a flat JSON object; a quoted
//!   string.
//! - [`id`]: event ids ordered as the server orders them (`N`, or a Redis
//!   stream's `ms-seq` with `--bus`).
//! - [`redis`]: a throwaway `redis-server` in a temporary directory, for
//!   the bus: start, `SIGKILL`, start again on the same files.
//! - [`procfs`]: a process's memory and CPU time from `/proc`; the
//!   open-file limit.
//! - [`rng`]: a small seeded generator for load patterns and garbage.
//!
//! Everything that parses is sans-IO (bytes in, items out, "not yet" is
//! not an error) and never panics on what a server sends: a bad server is
//! an `Err` for the caller to report.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod chunked;
pub mod http;
pub mod id;
pub mod json;
pub mod net;
pub mod procfs;
pub mod redis;
pub mod rng;
pub mod sse;

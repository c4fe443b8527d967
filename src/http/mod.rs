//! HTTP/1.1, just as much as an SSE server needs, all of it sans-IO: these
//! modules turn bytes into requests and responses into bytes, and never
//! touch a socket.
//!
//! - [`reader`]: the request reader, bytes in, requests out, one
//!   connection's requests one after another;
//! - [`request`]: the request head, via `httparse`, with the size limits;
//! - [`chunked`]: `Transfer-Encoding: chunked` request bodies;
//! - [`query`]: decoding `?name=value&...`;
//! - [`response`]: status lines, headers, and every canned error answer.

pub mod chunked;
pub mod query;
pub mod reader;
pub mod request;
pub mod response;

pub use request::{BodyFraming, Method, Request};
pub use response::{Framing, Rejection, Response};

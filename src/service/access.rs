//! Who may do what, as the service sees it: whether a request may publish
//! (and where), and what a stream with a token may read. The checks
//! themselves (the bearer comparison, the token's signature and claims)
//! are `auth.rs`'s; this file applies them to requests.

use std::rc::Rc;

use super::Service;
use crate::auth::{self, Grant, TokenError};
use crate::clock::{self, Now};
use crate::frame::Frame;
use crate::http::{Rejection, Request};
use crate::params;
use crate::sse;
use crate::topics::Topics;

/// Who is publishing, as far as the credentials say.
#[derive(Debug)]
pub(super) enum Publisher {
    /// No credential is configured: anyone may.
    Anyone,
    /// The `--publish-token`: any topic.
    Token,
    /// A token whose `ssed.publish` patterns say where.
    Grant(Grant),
}

impl Service {
    /// `/topics` is for whoever may publish, when publishing needs a
    /// credential: who listens to what is the publisher's business.
    pub(super) fn check_publisher(&self, request: &Request, now: Now) -> Result<(), Rejection> {
        self.publisher(request, now).map(|_| ())
    }

    /// Who may publish: anyone when no credential is configured; else the
    /// bearer of `--publish-token`, or of a token with `ssed.publish`.
    pub(super) fn publisher(&self, request: &Request, now: Now) -> Result<Publisher, Rejection> {
        let token = self.config.publish_token.as_deref();
        if token.is_none() && self.config.jwt_secret.is_none() {
            return Ok(Publisher::Anyone);
        }
        if token.is_some_and(|token| auth::bearer_matches(request.authorization.as_deref(), token)) {
            return Ok(Publisher::Token);
        }
        if self.config.jwt_secret.is_none() {
            return Err(Rejection::Unauthorized(
                "publishing needs Authorization: Bearer <token>",
            ));
        }
        let grant = self.grant(request, now)?;
        if grant.publish.is_empty() {
            return Err(Rejection::Forbidden("the token grants no publishing"));
        }
        Ok(Publisher::Grant(grant))
    }

    /// The request's token, verified (`--jwt-secret` is set).
    pub(super) fn grant(&self, request: &Request, now: Now) -> Result<Grant, Rejection> {
        let Some(secret) = &self.config.jwt_secret else {
            return Err(TokenError::Unsupported.rejection());
        };
        let token = auth::request_token(request).ok_or(TokenError::Missing.rejection())?;
        let now_secs = clock::unix_micros(now.wall) / 1_000_000;
        auth::verify(&token, secret.bytes(), now_secs).map_err(|error| error.rejection())
    }

    /// What a stream with a token reads: what it named, if the token covers
    /// every one of them; what the token covers, if it named none.
    pub(super) fn scope(&self, asked: &params::Subscribe, grant: &Grant) -> Result<Topics, Rejection> {
        if !asked.named {
            if grant.subscribe.is_empty() {
                return Err(Rejection::Forbidden("the token grants no topics"));
            }
            // The claim's patterns, each as it is (never split at commas).
            return Topics::from_items(grant.subscribe.iter().map(String::as_str))
                .ok_or(Rejection::Forbidden("the token grants no usable topics"));
        }
        if asked.topics.items().all(|item| grant.may_read(item)) {
            Ok(asked.topics.clone())
        } else {
            Err(Rejection::Forbidden(
                "the token does not cover every topic asked for",
            ))
        }
    }

    /// `event: reauth` with `data: {"exp":<exp>}`: the token of this stream
    /// expires soon; get a new one and reconnect with it (and
    /// `?lastEventId=`, so nothing is missed).
    pub fn reauth(&self, exp: u64) -> Rc<Frame> {
        let data = format!("{{\"exp\":{exp}}}");
        // A fixed name and no id: nothing to refuse.
        let encoded = sse::encode_event(None, Some("reauth"), &data).unwrap_or_default();
        Frame::chunk(&encoded)
    }
}

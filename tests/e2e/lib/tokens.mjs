// Subscriber tokens for the JavaScript tests, signed by `jose`, an
// independent JWT library: never ssed's own code, so a mistake shared by
// our signer and our verifier cannot hide.
//
//   {"exp": 1790000000, "sub": "user-42",
//    "ssed": {"subscribe": ["news", "user/42/*"], "publish": ["user/42/*"]}}

import { SignJWT } from 'jose';

/** The server's `--jwt-secret` (HS256 wants at least 32 bytes). */
export const JWT_SECRET = 'e2e-node-secret-with-more-than-32-bytes!';

/** `ssed` arguments for a server that wants tokens. */
export const JWT_ARGS = ['--jwt-secret', JWT_SECRET];

/** Seconds since the epoch, as `exp` counts them. */
export const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * An HS256 token for these topic patterns, good for `expiresIn` seconds
 * (an hour by default), or until `exp` when given.
 */
export async function signToken({ subscribe = [], publish = [], sub = 'user-42', expiresIn = 3600, exp } = {}) {
  return new SignJWT({ ssed: { subscribe, publish } })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setExpirationTime(exp ?? nowSecs() + expiresIn)
    .sign(new TextEncoder().encode(JWT_SECRET));
}

/** `{Authorization: 'Bearer <token>'}`, for fetch or the harness's publish. */
export const bearer = (token) => ({ Authorization: `Bearer ${token}` });

//! API tokens and ACLs (`/access/users/{userid}/token/{tokenid}`, `/access/acl`), for
//! short-lived tokens: create one with an expiry and privilege separation, grant it roles on
//! paths, delete it.
//!
//! PVE answers "no such token" with a 500 like any other handler error, so the methods that
//! must tell "absent" from a failure decide it with a follow-up read of the token list, and an
//! existing token name is a 400 on `tokenid` that is confirmed the same way.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::PveClient;
use crate::clients::http::{de, segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

/// A token to create (`POST /access/users/{userid}/token/{tokenid}`).
#[derive(Clone, Debug, Serialize)]
pub struct NewToken {
    /// Seconds since the epoch after which PVE refuses the token; `0`: never.
    pub expire: u64,
    /// Privilege separation: the token has only what ACL entries grant the token itself.
    #[serde(serialize_with = "flag")]
    pub privsep: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn flag<S: serde::Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*v))
}

/// What creating a token gives: its full id and its secret, which PVE shows only this once.
pub struct CreatedToken {
    /// `USER@REALM!TOKENID`.
    pub full_id: String,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken").field("full_id", &self.full_id).finish_non_exhaustive()
    }
}

/// A token as PVE lists it (`GET /access/users/{userid}/token`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TokenInfo {
    #[serde(default)]
    pub tokenid: String,
    /// Seconds since the epoch; `0` or absent: no expiry.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub expire: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub privsep: Option<bool>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Roles for a token on one path (`PUT /access/acl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclGrant {
    pub path: String,
    pub roles: Vec<String>,
    pub propagate: bool,
}

/// One entry of `GET /access/acl`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct AclEntry {
    pub path: String,
    /// `user`, `group` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    pub ugid: String,
    pub roleid: String,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub propagate: Option<bool>,
}

fn token_path(userid: &str, tokenid: &str) -> String {
    format!("/access/users/{}/token/{}", segment(userid), segment(tokenid))
}

impl PveClient {
    /// The API tokens of `userid`.
    pub async fn tokens(&self, userid: &str) -> Result<Vec<TokenInfo>, ClientError> {
        self.api.get(&format!("/access/users/{}/token", segment(userid))).await
    }

    /// Token `tokenid` of `userid`, `None` when there is none.
    pub async fn token(&self, userid: &str, tokenid: &str) -> Result<Option<TokenInfo>, ClientError> {
        Ok(self.tokens(userid).await?.into_iter().find(|t| t.tokenid == tokenid))
    }

    /// Creates token `tokenid` of `userid`. Sent once only: a repeat after a lost answer would
    /// find the token there, and its secret is never shown again. An existing token name is
    /// [`ApiErrorKind::AlreadyExists`].
    pub async fn create_token(
        &self,
        userid: &str,
        tokenid: &str,
        token: &NewToken,
    ) -> Result<CreatedToken, ClientError> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "full-tokenid")]
            full_id: String,
            value: String,
        }
        let path = token_path(userid, tokenid);
        match self.api.post::<_, Created>(&path, token, Retry::Once).await {
            Ok(c) => Ok(CreatedToken { full_id: c.full_id, secret: Zeroizing::new(c.value) }),
            Err(e)
                if e.is(ApiErrorKind::InvalidParams) && e.param_errors().is_some_and(|p| p.contains_key("tokenid")) =>
            {
                match self.token(userid, tokenid).await {
                    Ok(Some(_)) => Err(e.with_kind(ApiErrorKind::AlreadyExists)),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes token `tokenid` of `userid` (PVE drops its ACL entries with it). A token that is
    /// not there is [`ApiErrorKind::NotFound`].
    pub async fn delete_token(&self, userid: &str, tokenid: &str) -> Result<(), ClientError> {
        let path = token_path(userid, tokenid);
        match self.api.delete::<_, serde::de::IgnoredAny>(&path, &()).await {
            Ok(_) => Ok(()),
            // A 500 may be "no such token" or a real failure: the token list tells.
            Err(e) if e.is(ApiErrorKind::Server) => match self.token(userid, tokenid).await {
                Ok(None) => Err(e.with_kind(ApiErrorKind::NotFound)),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Grants `grant.roles` on `grant.path` to the token `full_id` (`USER@REALM!TOKENID`).
    /// Setting an entry that exists only sets its propagation again, so a repeat is harmless.
    pub async fn grant_token(&self, full_id: &str, grant: &AclGrant) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            path: &'a str,
            roles: String,
            tokens: &'a str,
            #[serde(serialize_with = "flag")]
            propagate: bool,
        }
        let body =
            Body { path: &grant.path, roles: grant.roles.join(","), tokens: full_id, propagate: grant.propagate };
        self.api.put::<_, serde::de::IgnoredAny>("/access/acl", &body).await.map(drop)
    }

    /// The ACL entries the caller may see (all of them with Sys.Audit on `/access`).
    pub async fn acl(&self) -> Result<Vec<AclEntry>, ClientError> {
        self.api.get("/access/acl").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_as_pve_takes_them() {
        let t = NewToken { expire: 1_700_000_000, privsep: true, comment: None };
        assert_eq!(serde_json::to_value(&t).unwrap(), serde_json::json!({"expire": 1_700_000_000u64, "privsep": 1}));
        assert_eq!(token_path("root@pam", "tf-1"), "/access/users/root@pam/token/tf-1");
    }

    #[test]
    fn lists_read_leniently() {
        let v = serde_json::json!([{"tokenid": "tf-1", "expire": "1700000000", "privsep": 1}]);
        let l: Vec<TokenInfo> = serde_json::from_value(v).unwrap();
        assert_eq!((l[0].expire, l[0].privsep), (Some(1_700_000_000), Some(true)));
        let a: Vec<AclEntry> = serde_json::from_value(serde_json::json!([
            {"path": "/", "type": "token", "ugid": "root@pam!tf-1", "roleid": "PVEAuditor", "propagate": 1}
        ]))
        .unwrap();
        assert_eq!(a[0].propagate, Some(true));
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let c = CreatedToken { full_id: "root@pam!tf-1".into(), secret: Zeroizing::new("s3cret".into()) };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

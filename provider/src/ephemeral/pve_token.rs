//! `ephemeral "edge_pve_token"`: a short-lived, least-privilege PVE API token for one Terraform
//! run. Opening it creates `USER!tf-<random>` with privilege separation on (the token has
//! only what its own ACL entries grant) and an expiry set on the token itself (PVE refuses it
//! after that second, even if nothing ever deletes it), then grants the roles asked for on the
//! paths asked for. Closing it deletes the token, and PVE its ACL entries with it.
//!
//! It authenticates with the credential of the provider configuration it belongs to (the
//! bootstrap credential: a long-lived token or root@pam's password), and only to mint and
//! remove the short-lived token. Its result is meant for another provider configuration's
//! `pve.api_token`; Terraform keeps ephemeral values out of plan and state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::clients::pve::{rfc3339_utc, AclGrant, NewToken, PveClient};
use crate::clients::{ApiErrorKind, ClientError};
use crate::framework::timeouts::parse_duration;
use crate::framework::{
    AttrPath, Attribute, Block, Ctx, Diagnostics, Done, EphemeralResource, Nesting, Opened, Schema, Type,
};
use crate::resources::{pve_api_attribute, pve_client, PveApi};

const WHAT: &str = "edge_pve_token";
const DEFAULT_USER: &str = "root@pam";
const DEFAULT_PREFIX: &str = "tf";
const DEFAULT_LIFETIME: &str = "30m";
/// Shorter than a minute cannot outlive the clock skew between here and the node.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// A "short-lived" token that lives longer than a week is a long-lived one.
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// One ACL entry for the token: `roles` on `path`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub path: Option<String>,
    pub roles: Option<Vec<String>>,
    pub propagate: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    // Configuration.
    pub user: Option<String>,
    pub name_prefix: Option<String>,
    pub lifetime: Option<String>,
    pub comment: Option<String>,
    pub acl: Option<Vec<Grant>>,
    pub pve: Option<PveApi>,
    // Result.
    pub token_id: Option<String>,
    pub secret: Option<String>,
    pub api_token: Option<String>,
    pub expires_at: Option<String>,
}

/// What closing needs: where the token is and what it is called (no secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Private {
    user: String,
    tokenid: String,
    expire: u64,
    pve: Option<PveApi>,
}

pub struct PveToken;

/// PVE's `pve-userid` format: `NAME@REALM`.
fn check_user(u: &str) -> Result<(), String> {
    let ok = u.split_once('@').is_some_and(|(name, realm)| {
        !name.is_empty()
            && !name.chars().any(|c| c.is_whitespace() || c == ':' || c == '/')
            && realm.len() >= 2
            && realm.starts_with(|c: char| c.is_ascii_alphabetic())
            && realm.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("{u:?} is not a PVE user id: expected NAME@REALM, e.g. \"root@pam\" or \"ci@pve\"."))
    }
}

/// The token name's start: PVE's `token-subid` is a letter, then letters, digits, `.`, `-`,
/// `_`; the provider appends `-` and 12 hex digits, and PVE's user.cfg line keeps it short.
fn check_prefix(p: &str) -> Result<(), String> {
    let ok = p.starts_with(|c: char| c.is_ascii_alphabetic())
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && p.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} cannot start a PVE token name: use a letter, then letters, digits, '.', '-' or '_' (at most 32)."
        ))
    }
}

/// An ACL path as PVE's `check_path` accepts them (the common roots; PVE checks the rest).
fn check_acl_path(p: &str) -> Result<(), String> {
    let roots = ["access", "nodes", "pool", "sdn", "storage", "vms", "mapping"];
    let first = p.trim_start_matches('/').split('/').next().unwrap_or("");
    let ok = p.starts_with('/')
        && !p.contains("//")
        && (p == "/" || roots.contains(&first))
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a PVE ACL path: use \"/\" or a path under /{}, e.g. \"/storage/local\".",
            roots.join(", /")
        ))
    }
}

fn lifetime_of(s: &State) -> Result<Duration, String> {
    let text = s.lifetime.as_deref().unwrap_or(DEFAULT_LIFETIME);
    let d = parse_duration(text)?;
    if d < MIN_LIFETIME || d > MAX_LIFETIME {
        return Err(format!(
            "{text:?} is outside 1m..168h: the token must outlive the run (and the clock skew to the node), \
             and a token that lives for weeks is not short-lived."
        ));
    }
    Ok(d)
}

/// The grants of a checked configuration, with PVE's default propagation.
fn grants(s: &State) -> Vec<AclGrant> {
    s.acl
        .iter()
        .flatten()
        .map(|g| AclGrant {
            path: g.path.clone().unwrap_or_default(),
            roles: g.roles.clone().unwrap_or_default(),
            propagate: g.propagate.unwrap_or(true),
        })
        .collect()
}

fn random_name(prefix: &str) -> String {
    let mut b = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}-{}", hex::encode(b))
}

/// A client error as a diagnostic the user can act on.
fn api_error(summary: String, path: Option<AttrPath>, e: &ClientError, user: &str) -> Diagnostics {
    let hint = match e.kind() {
        Some(ApiErrorKind::Forbidden) => format!(
            " The credential of this provider configuration may not do this: minting tokens for {user} needs \
             User.Modify (or being {user} itself), and granting roles needs Permissions.Modify on the path \
             (or holding every privilege of the role there)."
        ),
        Some(ApiErrorKind::Unauthorized) => {
            " The provider configuration's pve.api_token or pve.root_password was refused.".to_string()
        }
        _ => String::new(),
    };
    let detail = format!("{e}.{hint}");
    match path {
        Some(p) => Diagnostics::at(p, summary, detail),
        None => Diagnostics::error(summary, detail),
    }
}

/// Deletes the token; what went wrong, if anything, as a warning (the expiry still ends it).
async fn remove(pve: &PveClient, p: &Private) -> Diagnostics {
    let mut d = Diagnostics::new();
    match pve.delete_token(&p.user, &p.tokenid).await {
        Ok(()) => tracing::info!(token = %format!("{}!{}", p.user, p.tokenid), "removed the short-lived PVE token"),
        Err(e) if e.is(ApiErrorKind::NotFound) => {}
        Err(e) => d.warn(
            format!("Could not remove the PVE token {}!{}", p.user, p.tokenid),
            format!(
                "{e}. It stops working at {} by itself; delete it by hand to end it sooner.",
                rfc3339_utc(i64::try_from(p.expire).unwrap_or(i64::MAX))
            ),
        ),
    }
    d
}

#[async_trait]
impl EphemeralResource for PveToken {
    type State = State;

    fn type_name(&self) -> &'static str {
        WHAT
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "A short-lived, least-privilege PVE API token for one Terraform run, for another provider \
                 configuration's `pve.api_token`: created with an expiry and privilege separation, granted only \
                 the roles in `acl`, deleted when the run ends. Never in plan or state.",
            )
            .attr(Attribute::optional("user", Type::String).describe(
                "The user the token belongs to, default `root@pam`. The provider configuration's credential must \
                 be this user or have User.Modify.",
            ))
            .attr(
                Attribute::optional("name_prefix", Type::String)
                    .describe("Start of the token name, default `tf`: the token is `USER!PREFIX-<12 hex digits>`."),
            )
            .attr(Attribute::optional("lifetime", Type::String).describe(
                "How long PVE accepts the token (its `expire`), default `30m`, between `1m` and `168h`. Make it \
                 cover the whole run: it is not renewed.",
            ))
            .attr(
                Attribute::optional("comment", Type::String)
                    .describe("Comment on the token in PVE, default `edgeform run, expires <time>`."),
            )
            .attr(
                Attribute::nested(
                    "acl",
                    Nesting::List,
                    vec![
                        Attribute::required("path", Type::String)
                            .describe("ACL path, e.g. `/`, `/nodes/pve1`, `/storage/pbs-store1`."),
                        Attribute::required("roles", Type::list(Type::String))
                            .describe("PVE roles on the path, e.g. `[\"PVEAuditor\"]`, `[\"Administrator\"]`."),
                        Attribute::optional("propagate", Type::Bool)
                            .describe("Whether the roles apply below the path too, default true (as in PVE)."),
                    ],
                )
                .make_required()
                .describe(
                    "What the token may do: it has these roles and nothing else (privilege separation), and never \
                     more than its user.",
                ),
            )
            .attr(pve_api_attribute("the token"))
            .attr(Attribute::computed("token_id", Type::String).describe("The token's full id, `USER!NAME`."))
            .attr(Attribute::computed("secret", Type::String).sensitive().describe("The token's secret (UUID)."))
            .attr(
                Attribute::computed("api_token", Type::String)
                    .sensitive()
                    .describe("`token_id=secret`: what the provider block's `pve.api_token` takes."),
            )
            .attr(
                Attribute::computed("expires_at", Type::String)
                    .describe("When PVE stops accepting the token (RFC 3339, UTC)."),
            ),
        )
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        if let Some(u) = &c.user {
            if let Err(m) = check_user(u) {
                d.error_at(AttrPath::root("user"), "Invalid user", m);
            }
        }
        if let Some(p) = &c.name_prefix {
            if let Err(m) = check_prefix(p) {
                d.error_at(AttrPath::root("name_prefix"), "Invalid token name prefix", m);
            }
        }
        if c.lifetime.is_some() {
            if let Err(m) = lifetime_of(c) {
                d.error_at(AttrPath::root("lifetime"), "Invalid lifetime", m);
            }
        }
        match &c.acl {
            Some(list) if list.is_empty() => d.error_at(
                AttrPath::root("acl"),
                "No privileges",
                "A privilege-separated token without ACL entries can do nothing but read /version: grant it the \
                 roles the run needs, e.g. acl = [{ path = \"/\", roles = [\"PVEAuditor\"] }].",
            ),
            Some(list) => {
                for (i, g) in list.iter().enumerate() {
                    let at = AttrPath::root("acl").index(i);
                    if let Some(p) = &g.path {
                        if let Err(m) = check_acl_path(p) {
                            d.error_at(at.clone().attr("path"), "Invalid ACL path", m);
                        }
                    }
                    if g.roles.as_ref().is_some_and(|r| r.is_empty()) {
                        d.error_at(
                            at.clone().attr("roles"),
                            "No roles",
                            "Name at least one PVE role, e.g. \"PVEAuditor\".",
                        );
                    }
                    for (j, r) in g.roles.iter().flatten().enumerate() {
                        if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                            d.error_at(
                                at.clone().attr("roles").index(j),
                                "Invalid role name",
                                format!("{r:?} is not a PVE role id (letters, digits, '.', '-', '_')."),
                            );
                        }
                    }
                }
            }
            None => {}
        }
    }

    async fn open(&self, ctx: &Ctx, config: State) -> Result<Done<Opened<State>>, Diagnostics> {
        let mut diags = Diagnostics::new();
        self.validate(&config, &mut diags);
        if diags.has_errors() {
            return Err(diags);
        }
        let user = config.user.clone().unwrap_or_else(|| DEFAULT_USER.into());
        let lifetime =
            lifetime_of(&config).map_err(|m| Diagnostics::at(AttrPath::root("lifetime"), "Invalid lifetime", m))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let expire = now + lifetime.as_secs();
        let expires_at = rfc3339_utc(i64::try_from(expire).unwrap_or(i64::MAX));
        let pve = pve_client(ctx, config.pve.as_ref(), "edge_pve_token")?;
        let tokenid = random_name(config.name_prefix.as_deref().unwrap_or(DEFAULT_PREFIX));
        let request = NewToken {
            expire,
            privsep: true,
            comment: Some(config.comment.clone().unwrap_or_else(|| format!("edgeform run, expires {expires_at}"))),
        };
        let created = pve.create_token(&user, &tokenid, &request).await.map_err(|e| {
            api_error(format!("Cannot create a PVE API token for {user}"), Some(AttrPath::root("user")), &e, &user)
        })?;
        let private = Private { user: user.clone(), tokenid: tokenid.clone(), expire, pve: config.pve.clone() };
        for (i, g) in grants(&config).iter().enumerate() {
            if let Err(e) = pve.grant_token(&created.full_id, g).await {
                // Nothing half-made is left behind: the token goes again.
                let mut d = api_error(
                    format!("Cannot grant {} on {} to the new token", g.roles.join(", "), g.path),
                    Some(AttrPath::root("acl").index(i)),
                    &e,
                    &user,
                );
                d.extend(remove(&pve, &private).await);
                return Err(d);
            }
        }
        tracing::info!(token = %created.full_id, %expires_at, "opened a short-lived PVE token");
        let secret: Zeroizing<String> = created.secret;
        let result = State {
            token_id: Some(created.full_id.clone()),
            api_token: Some(format!("{}={}", created.full_id, secret.as_str())),
            secret: Some(secret.to_string()),
            expires_at: Some(expires_at),
            ..config
        };
        let private = serde_json::to_value(&private).map_err(|e| Diagnostics::error("Provider bug", e.to_string()))?;
        // Not renewed: the token's own expiry covers the run (`lifetime`).
        Ok(Opened { result, private, renew_at: None }.into())
    }

    async fn close(&self, ctx: &Ctx, private: serde_json::Value) -> Result<Done<()>, Diagnostics> {
        let p: Private = serde_json::from_value(private).map_err(|e| {
            Diagnostics::error(
                "Cannot close edge_pve_token",
                format!("its private data does not fit: {e}. This is a bug in the provider."),
            )
        })?;
        let pve = pve_client(ctx, p.pve.as_ref(), "edge_pve_token")?;
        Ok(Done::with_warnings((), remove(&pve, &p).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(d: &Diagnostics) -> Vec<String> {
        d.0.iter().filter_map(|x| x.path.as_ref().map(|p| p.to_string())).collect()
    }

    #[test]
    fn bad_configuration_names_its_attribute() {
        let c = State {
            user: Some("root".into()),
            name_prefix: Some("1tf".into()),
            lifetime: Some("10s".into()),
            acl: Some(vec![
                Grant { path: Some("/nodes//x".into()), roles: Some(vec![]), propagate: None },
                Grant { path: Some("/".into()), roles: Some(vec!["PVE Auditor".into()]), propagate: None },
            ]),
            ..Default::default()
        };
        let mut d = Diagnostics::new();
        PveToken.validate(&c, &mut d);
        assert_eq!(
            paths(&d),
            vec!["user", "name_prefix", "lifetime", "acl[0].path", "acl[0].roles", "acl[1].roles[0]"],
            "{d:?}"
        );
        let mut d = Diagnostics::new();
        PveToken.validate(&State { acl: Some(vec![]), ..Default::default() }, &mut d);
        assert_eq!(paths(&d), vec!["acl"]);
    }

    #[test]
    fn defaults_and_names() {
        let s = State::default();
        assert_eq!(lifetime_of(&s), Ok(Duration::from_secs(1800)));
        assert!(lifetime_of(&State { lifetime: Some("200h".into()), ..Default::default() }).is_err());
        let n = random_name("tf");
        assert!(n.starts_with("tf-") && n.len() == 15, "{n}");
        assert_ne!(random_name("tf"), n);
        assert!(check_user("ci@pve").is_ok() && check_user("root@pam").is_ok());
        assert!(check_acl_path("/storage/pbs-store1").is_ok() && check_acl_path("storage").is_err());
        let g = grants(&State {
            acl: Some(vec![Grant { path: Some("/".into()), roles: Some(vec!["PVEAuditor".into()]), propagate: None }]),
            ..Default::default()
        });
        assert_eq!(g, vec![AclGrant { path: "/".into(), roles: vec!["PVEAuditor".into()], propagate: true }]);
    }
}

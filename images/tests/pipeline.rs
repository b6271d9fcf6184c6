//! The image pipeline as CI runs it (`ci/image-pipeline.sh`, called by .github/workflows/images.yml
//! and ci/gitlab-ci.yml), offline, on a stand-in image real Nix 2.8 builds with no inputs
//! (images/tests/fixtures/pipeline/standin.nix): build twice → SBOM → vulnix against a fixture
//! NVD mirror → sign → publish to a file:// binary cache → release bundle + canary channel.
//! The evidence comes from real peers: `nix copy --from` into a fresh store with
//! `trusted-public-keys`, `openssl dgst -verify` for the Cosign signature, `sha256sum`,
//! `actionlint` and `zizmor` for the workflows. The PyPI tools come from `.tools/ci-venv`
//! (scripts/install-deps.sh, pins in ci/requirements-ci.txt); without them these tests fail.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    repo_root().join("images/tests/fixtures/pipeline")
}

/// A tool of ci/requirements-ci.txt, from the venv scripts/install-deps.sh makes.
fn ci_tool(name: &str) -> PathBuf {
    let p = repo_root().join(".tools/ci-venv/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-deps.sh (it installs ci/requirements-ci.txt into .tools/ci-venv)",
        p.display()
    );
    p
}

/// The real binary NAME on PATH (the argv-recording wrappers exec it).
fn on_path(name: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| panic!("`{name}` is not installed (scripts/install-deps.sh installs it)"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

// --- the workflows ------------------------------------------------------------------------------

fn workflows() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo_root().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    let names: Vec<_> = files.iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect();
    for w in ["images.yml", "test.yml"] {
        assert!(names.iter().any(|n| n == w), "{w} is missing from .github/workflows: {names:?}");
    }
    files
}

#[test]
fn the_workflows_pass_actionlint_and_zizmor() {
    let files = workflows();
    let actionlint = ci_tool("actionlint");
    let zizmor = ci_tool("zizmor");
    ok(Command::new(&actionlint).arg("-no-color").args(&files));
    // --offline: no GitHub API; the audits that need none (template injection, unpinned uses,
    // excessive permissions, credential persistence, ...) all run.
    ok(Command::new(&zizmor).args(["--offline", "--no-progress"]).arg(repo_root().join(".github/workflows")));

    // Both tools find what they are here to find (negative controls on a bad workflow).
    let d = tempfile::tempdir().unwrap();
    let wf = d.path().join(".github/workflows");
    fs::create_dir_all(&wf).unwrap();
    fs::write(
        wf.join("bad.yml"),
        "name: bad\non:\n  pull_request_target: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      \
         - uses: actions/checkout@v4\n      - run: echo \"${{ github.event.pull_request.title }}\"\n  \
         b:\n    needs: nope\n    runs-on: ubuntu-24.04\n    steps:\n      - run: true\n",
    )
    .unwrap();
    let o = Command::new(&actionlint).arg("-no-color").arg(wf.join("bad.yml")).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("nope"), "actionlint missed an undefined job:\n{}", text(&o));
    let o = Command::new(&zizmor).args(["--offline", "--no-progress"]).arg(&wf).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("template-injection"),
        "zizmor missed a template injection:\n{}",
        text(&o)
    );

    // No logic lives only in YAML: every step that runs a command runs the pipeline script
    // (images.yml) or the suite (test.yml); GitLab's jobs likewise.
    let runs = |path: &Path, prefix: &str| -> Vec<String> {
        let src = fs::read_to_string(path).unwrap();
        src.lines()
            .map(str::trim_start)
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty() && !r.starts_with('[') && r != "|")
            .collect()
    };
    let image_runs = runs(&repo_root().join(".github/workflows/images.yml"), "run: ");
    assert!(image_runs.len() >= 7, "{image_runs:?}");
    for r in &image_runs {
        assert!(r.starts_with("ci/image-pipeline.sh "), "images.yml runs more than the pipeline script: {r}");
    }
    let stages: BTreeSet<&str> = image_runs.iter().filter_map(|r| r.split_whitespace().nth(1)).collect();
    for s in ["tools", "build", "sbom", "scan", "sign", "publish", "release"] {
        assert!(stages.contains(s), "images.yml never runs the {s} stage: {stages:?}");
    }
    let gitlab = runs(&repo_root().join("ci/gitlab-ci.yml"), "- ci/");
    let gl_stages: BTreeSet<&str> = gitlab.iter().filter_map(|r| r.split_whitespace().nth(1)).collect();
    assert_eq!(stages, gl_stages, "GitLab runs other stages than GitHub");
    let images = fs::read_to_string(repo_root().join(".github/workflows/images.yml")).unwrap();
    assert!(images.contains("tags: [\"v*\"]") && images.contains("cron: \"0 2 * * 1\""), "tag + Monday 02:00");
    let test = fs::read_to_string(repo_root().join(".github/workflows/test.yml")).unwrap();
    assert!(test.lines().any(|l| l.trim() == "run: make test"), "test.yml does not run make test");
}

// --- the pipeline -------------------------------------------------------------------------------

/// One pipeline run directory: PIPELINE_OUT, TMPDIR, the keys, and wrappers that record every
/// argv the script passes to nix, openssl, vulnix, edge-image and edge-fleet.
struct Pipeline {
    dir: tempfile::TempDir,
    nonce: String,
    image_key: (PathBuf, String),
    channel_key: (PathBuf, String),
    cosign_key: PathBuf,
    cosign_pub: PathBuf,
    outputs: Vec<String>,
}

impl Pipeline {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let bin = dir.path().join("bin");
        for d in [&keys, &bin, &dir.path().join("tmp")] {
            fs::create_dir_all(d).unwrap();
        }
        let image_key = nix_keypair(&keys, "edge-ci-test-1");
        let channel_key = nix_keypair(&keys, "edge-channel-test-1");
        let cosign_key = keys.join("cosign.pem");
        let cosign_pub = keys.join("cosign.pub");
        ok(Command::new("openssl")
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"])
            .arg(&cosign_key));
        ok(Command::new("openssl").args(["ec", "-pubout", "-in"]).arg(&cosign_key).arg("-out").arg(&cosign_pub));

        let edge_image = PathBuf::from(env!("CARGO_BIN_EXE_edge-image"));
        let edge_fleet = edge_image.with_file_name("edge-fleet");
        assert!(
            edge_fleet.is_file(),
            "{} is missing: `make test` builds every binary first; alone, run `cargo build -p edge-fleet`",
            edge_fleet.display()
        );
        let log = dir.path().join("argv.log");
        let wrap = |name: &str, real: &Path| {
            let w = bin.join(name);
            fs::write(
                &w,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$0 $*\" >> '{}'\nexec '{}' \"$@\"\n",
                    log.display(),
                    real.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
        };
        for t in ["nix", "nix-build", "nix-store", "openssl"] {
            wrap(t, &on_path(t));
        }
        wrap("edge-image", &edge_image);
        wrap("edge-fleet", &edge_fleet);
        wrap("vulnix", &ci_tool("vulnix"));
        Pipeline { dir, nonce: nonce(), image_key, channel_key, cosign_key, cosign_pub, outputs: Vec::new() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The fixture advisories as an NVD JSON 1.1 mirror: vulnix fetches the yearly feeds of the
    /// last five years, so every one of them carries the fixture (advisories are keyed by id).
    fn mirror(&self, fixture: &str) -> String {
        let m = self.path(&format!("nvd-{fixture}"));
        fs::create_dir_all(&m).unwrap();
        let year: i32 = ok(Command::new("date").args(["-u", "+%Y"])).parse().expect("a year");
        for y in year - 6..=year + 1 {
            let f = fs::File::create(m.join(format!("nvdcve-1.1-{y}.json.gz"))).unwrap();
            ok(Command::new("gzip").args(["-n", "-c"]).arg(fixtures().join(format!("nvd-{fixture}.json"))).stdout(f));
        }
        format!("file://{}", m.display())
    }

    fn stage(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let bin = self.path("bin");
        let path = std::env::join_paths(
            std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        let mut c = Command::new(repo_root().join("ci/image-pipeline.sh"));
        c.args(args)
            .current_dir(repo_root())
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("PATH", path)
            .env("TMPDIR", self.path("tmp"))
            .env("PIPELINE_OUT", self.path("out"))
            .env("EDGE_IMAGE", bin.join("edge-image"))
            .env("EDGE_FLEET", bin.join("edge-fleet"))
            .env("VULNIX", bin.join("vulnix"))
            .env("IMAGE_VERSION", "1.0.0-test")
            .env("SCAN_WAIVERS", self.path("no-waivers.toml"))
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap_or_else(|e| panic!("cannot run the pipeline: {e}"));
        let mut all = fs::OpenOptions::new().create(true).append(true).open(self.path("outputs.log")).unwrap();
        std::io::Write::write_all(&mut all, &o.stdout).unwrap();
        std::io::Write::write_all(&mut all, &o.stderr).unwrap();
        o
    }

    fn stage_ok(&self, args: &[&str], env: &[(&str, String)]) -> String {
        let o = self.stage(args, env);
        assert!(o.status.success(), "ci/image-pipeline.sh {args:?} failed ({}):\n{}", o.status, text(&o));
        text(&o)
    }

    fn build(&mut self) {
        let standin = fixtures().join("standin.nix");
        let standin = standin.to_str().unwrap();
        self.stage_ok(
            &["build", "--file", standin, "--argstr", "nonce", &self.nonce, "system", "image", "netboot"],
            &[],
        );
        // What Nix itself says these attributes are (already built: no second build).
        self.outputs = ["system", "image", "netboot"]
            .iter()
            .map(|a| ok(nix("nix-build").args(["--no-out-link", standin, "--argstr", "nonce", &self.nonce, "-A", a])))
            .collect();
    }

    fn signing_env(&self) -> Vec<(&'static str, String)> {
        vec![
            // As GitHub passes secrets (contents in the environment) ...
            ("IMAGE_SIGNING_KEY", fs::read_to_string(&self.image_key.0).unwrap()),
            // ... and as GitLab's File variables do (a path).
            ("COSIGN_KEY_FILE", self.cosign_key.display().to_string()),
            ("CHANNEL_SIGNING_KEY_FILE", self.channel_key.0.display().to_string()),
        ]
    }
}

fn nix_copy_from(cache: &Path, store: &Path, trusted: &str, paths: &[String]) -> Output {
    nix("nix")
        .args(["copy", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg("--store")
        .arg(store)
        .args(["--option", "trusted-public-keys", trusted])
        .args(paths)
        .output()
        .unwrap()
}

/// Every regular file under `root` that contains `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if meta.is_file() {
            let bytes = fs::read(&p).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn the_pipeline_builds_scans_signs_publishes_and_releases_a_nix_built_image() {
    let mut p = Pipeline::new();
    fs::write(p.path("no-waivers.toml"), "").unwrap();
    p.build();
    let [system, image, netboot] = [&p.outputs[0], &p.outputs[1], &p.outputs[2]];

    let out = p.path("out");
    let built = fs::read_to_string(out.join("build/nar-hashes")).unwrap();
    for path in &p.outputs {
        let nar = ok(nix("nix").args(["hash", "path", "--base32", path]));
        assert!(built.contains(&format!("{path} sha256:{nar}")), "build/nar-hashes lacks {path}:\n{built}");
    }

    p.stage_ok(&["sbom"], &[]);
    let sbom: Value = serde_json::from_slice(&fs::read(out.join("sbom/sbom.cdx.json")).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert!(
        sbom["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "edge-standin-libfoo" && c["version"] == "1.2.3"),
        "the SBOM lacks the system's library: {sbom}"
    );

    // The scanner read the mirror: it reports the low-severity advisory, which passes.
    let scan = p.stage_ok(&["scan"], &[("NVD_MIRROR", p.mirror("clean"))]);
    assert!(scan.contains("below threshold 7.0: CVE-2099-0102 in edge-standin-system-1.0"), "{scan}");
    assert!(scan.contains("scan: PASSED"), "{scan}");
    let report: Value = serde_json::from_slice(&fs::read(out.join("scan/vulnix.json")).unwrap()).unwrap();
    assert_eq!(report[0]["affected_by"], serde_json::json!(["CVE-2099-0102"]), "{report}");

    let env = p.signing_env();
    p.stage_ok(&["sign"], &env);
    let cache = p.path("cache");
    let mut publish_env = env.clone();
    publish_env.push(("PUBLISH_TO", format!("file://{}", cache.display())));
    p.stage_ok(&["publish"], &publish_env);

    let config = p.path("store-config");
    fs::create_dir_all(&config).unwrap();
    fs::write(config.join("main.tf"), "terraform {}\n").unwrap();
    fs::write(config.join(".terraform.lock.hcl"), "# stand-in lock file\n").unwrap();
    let provider = p.path("terraform-provider-edge");
    fs::write(&provider, "stand-in provider binary\n").unwrap();
    let mut release_env = env.clone();
    release_env.push(("RELEASE_CONFIG", config.display().to_string()));
    release_env.push(("RELEASE_PROVIDER", provider.display().to_string()));
    p.stage_ok(&["release"], &release_env);

    // The published manifest names the system Nix built and lists the two image files.
    let published: Vec<PathBuf> = fs::read_dir(cache.join("images")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(published.len(), 1, "{published:?}");
    let images_dir = &published[0];
    let manifest = images_dir.join("manifest.json");
    let m: Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["manifest"]["system"], system.as_str());
    let names: BTreeSet<&str> =
        m["manifest"]["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["netboot.ipxe", "nixos.img"]));
    let sha = ok(Command::new("sha256sum").arg(&manifest));
    assert_eq!(
        Some(images_dir.file_name().unwrap().to_str().unwrap()),
        sha.split_whitespace().next(),
        "published under another name than its sha256"
    );

    // Real Nix takes the closure from the cache into a fresh store with the public key trusted,
    // and refuses it with another key.
    let pk = &p.image_key.1;
    let store = p.path("fresh-store");
    let o = nix_copy_from(&cache, &store, pk, &p.outputs);
    assert!(o.status.success(), "nix copy --from the published cache:\n{}", text(&o));
    for path in &p.outputs {
        let copied = store.join(path.trim_start_matches('/'));
        assert_eq!(fs::read(&copied).unwrap(), fs::read(path).unwrap(), "{path}");
    }
    assert!(fs::read_to_string(store.join(image.trim_start_matches('/'))).unwrap().contains(system.as_str()));
    fs::create_dir_all(p.path("other-keys")).unwrap();
    let other = nix_keypair(&p.path("other-keys"), "edge-ci-test-1").1; // same name, other key
    let o = nix_copy_from(&cache, &p.path("store-other-key"), &other, std::slice::from_ref(netboot));
    assert!(!o.status.success() && text(&o).contains("lacks a valid signature"), "{}", text(&o));

    // The provider's own image check, on the published files, cache and attestation.
    let url = format!("file://{}", cache.display());
    ok(edge_image().args(["verify", "--manifest"]).arg(&manifest).args(["--trusted-key", pk, "--dir"]).arg(images_dir));
    ok(edge_image().args(["verify", "--cache", &url, "--trusted-key", pk]).args(&p.outputs));
    ok(edge_image().args(["verify-attestation", "--manifest"]).arg(&manifest).args(["--trusted-key", pk]));

    // OpenSSL checks the Cosign signature (base64 DER ECDSA P-256 over SHA-256), and refuses
    // it on a manifest with one byte changed.
    let der = p.path("manifest.sig.der");
    ok(Command::new("base64")
        .arg("-d")
        .arg(images_dir.join("manifest.json.sig"))
        .stdout(fs::File::create(&der).unwrap()));
    let verify = |file: &Path| {
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&p.cosign_pub)
            .arg("-signature")
            .arg(&der)
            .arg(file)
            .output()
            .unwrap()
    };
    let o = verify(&manifest);
    assert!(o.status.success() && text(&o).contains("Verified OK"), "{}", text(&o));
    let mut altered = fs::read(&manifest).unwrap();
    altered[10] ^= 1;
    fs::write(p.path("altered.json"), altered).unwrap();
    assert!(!verify(&p.path("altered.json")).status.success(), "openssl accepted an altered manifest");

    // The release bundle names the published manifest by its sha256; the canary channel
    // manifest points at the bundle and is accepted by a store trusting the channel key.
    let id = fs::read_to_string(out.join("release/release-id")).unwrap().trim().to_string();
    let release: Value =
        serde_json::from_slice(&fs::read(out.join(format!("release/bundles/{id}/release.json"))).unwrap()).unwrap();
    assert_eq!(release["image_manifest_sha256"].as_str(), sha.split_whitespace().next(), "{release}");
    let accepted = ok(Command::new(PathBuf::from(env!("CARGO_BIN_EXE_edge-image")).with_file_name("edge-fleet"))
        .args(["channel", "verify"])
        .arg(out.join("release/canary.json"))
        .args(["--trusted", &p.channel_key.1, "--threshold", "1", "--channel", "canary"]));
    assert!(accepted.contains("channel canary") && accepted.contains(&id), "{accepted}");

    // (d) The secret keys' contents appear in no output, no argv, no file the pipeline wrote or
    // published, not in the fresh store nor the closure in /nix/store; the secrets' temporary
    // directory is gone.
    let image_secret = fs::read_to_string(&p.image_key.0).unwrap();
    let image_secret_b64 = image_secret.trim().split_once(':').unwrap().1.to_string();
    let cosign_pem = fs::read_to_string(&p.cosign_key).unwrap();
    let cosign_body =
        cosign_pem.lines().filter(|l| !l.starts_with("-----")).max_by_key(|l| l.len()).unwrap().to_string();
    let channel_secret = fs::read_to_string(&p.channel_key.0).unwrap();
    let channel_b64 = channel_secret.trim().split_once(':').unwrap().1.to_string();
    let needles = [&image_secret_b64[..], &image_secret_b64[..40], &cosign_body[..], &channel_b64[..]];
    // The search itself works: it finds the signing key's name in the signed narinfos.
    assert!(!files_containing(&cache, b"Sig: edge-ci-test-1:").is_empty(), "the search finds nothing at all");
    let argv = fs::read_to_string(p.path("argv.log")).unwrap();
    for tool in ["nix copy --to", "openssl dgst", "edge-image", "edge-fleet channel sign", "vulnix"] {
        assert!(argv.lines().any(|l| l.contains(tool)), "no `{tool}` in the recorded argv:\n{argv}");
    }
    let closure: Vec<String> = ok(nix("nix-store").arg("-qR").args(&p.outputs)).lines().map(str::to_string).collect();
    assert!(closure.len() >= 4, "{closure:?}");
    for needle in needles {
        assert!(!argv.contains(needle), "a secret key is in an argv:\n{argv}");
        let all = fs::read(p.path("outputs.log")).unwrap();
        assert!(!all.windows(needle.len()).any(|w| w == needle.as_bytes()), "a secret key is in the pipeline's output");
        for root in [out.clone(), cache.clone(), store.clone(), p.path("tmp")] {
            assert_eq!(files_containing(&root, needle.as_bytes()), Vec::<PathBuf>::new(), "a secret key in a file");
        }
        for path in &closure {
            assert_eq!(files_containing(Path::new(path), needle.as_bytes()), Vec::<PathBuf>::new());
        }
    }
    let left: Vec<_> = fs::read_dir(p.path("tmp"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("edge-pipeline-secrets"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "the secrets' directory outlived the pipeline");
}

#[test]
fn a_finding_above_the_threshold_fails_the_scan_naming_component_and_advisory() {
    let mut p = Pipeline::new();
    p.build();
    p.stage_ok(&["sbom"], &[]);
    let mirror = p.mirror("finding");
    let waivers = p.path("waivers.toml");
    let scan = |waiver: Option<&str>| {
        fs::write(&waivers, waiver.unwrap_or("")).unwrap();
        p.stage(&["scan"], &[("NVD_MIRROR", mirror.clone()), ("SCAN_WAIVERS", waivers.display().to_string())])
    };

    let o = scan(None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("FAIL CVE-2099-0001 in edge-standin-libfoo-1.2.3 (CVSS 9.8)"),
        "the failure does not name the component and the advisory:\n{}",
        text(&o)
    );
    // Nothing unscanned is signed.
    let o = p.stage(&["sign"], &p.signing_env());
    assert!(!o.status.success() && text(&o).contains("no passing scan verdict"), "{}", text(&o));

    let waiver = |expires: &str| {
        format!(
            "[[waiver]]\ncomponent = \"edge-standin-libfoo\"\nadvisory = \"CVE-2099-0001\"\n\
             reason = \"fixture: the affected code is not in the image\"\nexpires = {expires}\n"
        )
    };
    let o = scan(Some(&waiver("2000-01-31")));
    assert_eq!(o.status.code(), Some(1), "an expired waiver waived:\n{}", text(&o));
    assert!(text(&o).contains("waiver expired on 2000-01-31"), "{}", text(&o));
    assert!(text(&o).contains("FAIL CVE-2099-0001 in edge-standin-libfoo-1.2.3"), "{}", text(&o));

    // A waiver without a reason is refused, not applied.
    let o =
        scan(Some(&waiver("2999-12-31").replace("reason = \"fixture: the affected code is not in the image\"\n", "")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("lacks reason"), "{}", text(&o));

    let o = scan(Some(&waiver("2999-12-31")));
    assert!(o.status.success(), "a live waiver did not waive:\n{}", text(&o));
    assert!(text(&o).contains("WAIVED CVE-2099-0001 in edge-standin-libfoo-1.2.3"), "{}", text(&o));
}

#[test]
fn a_build_that_differs_on_rebuild_fails_naming_the_path() {
    let p = Pipeline::new();
    let standin = fixtures().join("standin.nix");
    let standin = standin.to_str().unwrap();
    let o = p.stage(&["build", "--file", standin, "--argstr", "nonce", &p.nonce, "unstable"], &[]);
    let drv = ok(nix("nix-instantiate").args([standin, "--argstr", "nonce", &p.nonce, "-A", "unstable"]));
    let path = ok(nix("nix-store").args(["-q", "--outputs", &drv]));
    // The rebuild's output, kept by --keep-failed for the comparison, is not a valid store path.
    let _ = fs::remove_dir_all(format!("{path}.check")).or_else(|_| fs::remove_file(format!("{path}.check")));
    assert!(!o.status.success(), "an unreproducible build passed:\n{}", text(&o));
    assert!(
        text(&o).contains("NOT REPRODUCIBLE") && text(&o).contains(&format!("{path}: NAR sha256:")),
        "the failure does not name {path}:\n{}",
        text(&o)
    );
    assert!(!p.path("out/build/system").exists(), "a failed build left a result for the next stages");
}

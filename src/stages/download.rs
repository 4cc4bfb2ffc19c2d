//! `download`: the CIFAR-10 binary batches, fetched from the official URL or taken from a
//! local copy.
//!
//! The download resumes a partial file with an HTTP Range request, retries with backoff,
//! refuses (and deletes) a file whose md5 differs, and extracts the tarball. A local copy —
//! a folder in the `cifar-10-batches-bin` layout or the tarball — is named in the config
//! (`source: Local("…")`) or, for every pipeline at once, by the `PIPE_CIFAR10` environment
//! variable. A local copy's files are hashed into the key, so pointing at another copy
//! rebuilds; and since downstream keys use this stage's output content, a local copy and a
//! download of the same bytes share every later cache entry.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use md5::Digest;
use serde::{Deserialize, Serialize};

use crate::dataset::{META_FILE, TEST_FILE, TRAIN_FILES};
use crate::stage::{FieldError, KeyCtx, Kind, Missing, RunCtx, StageConfig};

pub static DOWNLOAD: Kind<DownloadConfig> = Kind::new("download", 1);

/// Points every download stage at a local copy, overriding `source`.
pub const LOCAL_ENV: &str = "PIPE_CIFAR10";
pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const OFFICIAL_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
const OFFLINE_HINT: &str = "Point pipe at a local copy of CIFAR-10 (a folder in the cifar-10-batches-bin \
                            layout, or the .tar.gz): set PIPE_CIFAR10=/path/to/it, or give the download stage \
                            `source: Local(\"path\")`";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub enum Source {
    /// Download `url`.
    #[default]
    Url,
    /// A folder in the `cifar-10-batches-bin` layout (or holding one), or the tarball;
    /// relative to the project root.
    Local(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DownloadConfig {
    #[serde(default = "default_url")]
    pub url: String,
    /// md5 of the tarball (the official one by default); checked for downloads and local
    /// tarballs. Empty: not checked.
    #[serde(default = "default_md5")]
    pub md5: String,
    #[serde(default)]
    pub source: Source,
    /// Attempts after the first; how the bytes are fetched, not what they are: not in the key.
    #[serde(
        default = "default_retries",
        skip_serializing_if = "crate::stage::keying"
    )]
    pub retries: u32,
    /// First wait between attempts, doubled each time.
    #[serde(
        default = "default_backoff_ms",
        skip_serializing_if = "crate::stage::keying"
    )]
    pub backoff_ms: u64,
}

fn default_url() -> String {
    OFFICIAL_URL.into()
}
fn default_md5() -> String {
    OFFICIAL_MD5.into()
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    1000
}

/// Where the bytes come from in this process.
enum Origin {
    Url,
    Folder(PathBuf),
    Tarball(PathBuf),
}

/// The files a CIFAR-10 binary folder provides (the meta file is optional).
fn wanted_files() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES.iter().copied().chain([TEST_FILE, META_FILE])
}

impl DownloadConfig {
    fn origin(&self, root: &Path) -> anyhow::Result<Origin> {
        let (path, said) = match std::env::var(LOCAL_ENV) {
            Ok(p) if !p.trim().is_empty() => {
                (std::path::absolute(p.trim())?, format!("{LOCAL_ENV}={p}"))
            }
            _ => match &self.source {
                Source::Url => return Ok(Origin::Url),
                Source::Local(p) => (root.join(p), format!("source: Local({p:?})")),
            },
        };
        if path.is_dir() {
            let inner = path.join("cifar-10-batches-bin");
            Ok(Origin::Folder(if inner.is_dir() { inner } else { path }))
        } else if path.is_file() {
            Ok(Origin::Tarball(path))
        } else {
            let named = std::env::var_os(LOCAL_ENV).is_some_and(|v| !v.is_empty());
            let fix = if named {
                format!("correct {LOCAL_ENV} (or unset it to use the stage's `source`)")
            } else {
                format!(
                    "set {LOCAL_ENV}=/path/to/cifar-10-batches-bin (the folder or the .tar.gz) \
                     for every download stage, or write the path in this stage's `source: \
                     Local(\"…\")` (relative to the project root)"
                )
            };
            Err(Missing {
                message: format!("no CIFAR-10 at {}: {said}", path.display()),
                hint: format!("{fix}; `source: Url` downloads the official archive (163 MB)"),
                stand_in: !named,
            }
            .into())
        }
    }
}

impl StageConfig for DownloadConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(
                FieldError::new("url", format!("`{}` is not an http(s) URL", self.url))
                    .hint(format!("the official one is {OFFICIAL_URL}")),
            );
        }
        if !self.md5.is_empty()
            && (self.md5.len() != 32 || !self.md5.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(FieldError::new(
                "md5",
                format!("`{}` is not an md5 (32 hex digits)", self.md5),
            ));
        }
        Ok(())
    }

    fn external_key(&self, ctx: &KeyCtx) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(match self.origin(ctx.project_root())? {
            Origin::Url => None,
            Origin::Tarball(p) => Some(serde_json::json!({ "local_tarball": ctx.hash_file(&p)? })),
            Origin::Folder(dir) => {
                let mut files = BTreeMap::new();
                for name in wanted_files() {
                    let p = dir.join(name);
                    if p.is_file() {
                        files.insert(name.to_string(), ctx.hash_file(&p)?);
                    }
                }
                Some(serde_json::json!({ "local_folder": files }))
            }
        })
    }

    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        match self.origin(ctx.project_root())? {
            Origin::Folder(dir) => {
                for name in wanted_files() {
                    let from = dir.join(name);
                    if from.is_file() {
                        fs::copy(&from, ctx.out_dir().join(name))
                            .with_context(|| format!("cannot copy {}", from.display()))?;
                    }
                }
                ctx.log(format!("copied the local copy in {}", dir.display()));
            }
            Origin::Tarball(path) => {
                check_md5(&path, &self.md5, false)?;
                extract(&path, ctx.out_dir())?;
                ctx.log(format!("extracted the local tarball {}", path.display()));
            }
            Origin::Url => {
                let part = ctx.scratch_dir().join("cifar-10-binary.tar.gz.part");
                self.fetch(&part, ctx)?;
                check_md5(&part, &self.md5, true)?;
                extract(&part, ctx.out_dir()).inspect_err(|_| {
                    let _ = fs::remove_file(&part);
                })?;
                ctx.log(format!("downloaded and extracted {}", self.url));
            }
        }
        let missing: Vec<&str> = TRAIN_FILES
            .iter()
            .copied()
            .chain([TEST_FILE])
            .filter(|f| !ctx.out_dir().join(f).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "the data lacks {}: not the CIFAR-10 binary version",
                missing.join(", ")
            );
        }
        Ok(())
    }
}

/// One attempt's end: done, worth another try, or not.
enum Attempt {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl DownloadConfig {
    /// Downloads `url` into `part`, resuming what is already there.
    fn fetch(&self, part: &Path, ctx: &RunCtx) -> anyhow::Result<()> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        self.resolve_host()?;
        let mut failures = 0;
        loop {
            match self.attempt(&agent, part, ctx) {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    failures += 1;
                    if failures > self.retries {
                        return Err(e.context(format!(
                            "cannot download {} ({failures} attempts). Offline? {OFFLINE_HINT}",
                            self.url
                        )));
                    }
                    let wait = self.backoff_ms.saturating_mul(1 << (failures - 1).min(10));
                    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
                    ctx.progress_bytes(
                        have,
                        have,
                        &format!("retry {failures} in {wait} ms: {e:#}"),
                    );
                    std::thread::sleep(Duration::from_millis(wait));
                }
            }
        }
    }

    /// Fails at once, with the way out, when the host has no address: offline (or a typo),
    /// which retries would only make slower to report.
    fn resolve_host(&self) -> anyhow::Result<()> {
        use std::net::ToSocketAddrs;
        let rest = self
            .url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.url);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let authority = authority
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(authority);
        let default_port = if self.url.starts_with("https://") {
            443
        } else {
            80
        };
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        match addr.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => bail!("`{authority}` has no address. Offline? {OFFLINE_HINT}"),
            Err(e) => bail!("cannot resolve `{authority}` ({e}). Offline? {OFFLINE_HINT}"),
        }
    }

    fn attempt(&self, agent: &ureq::Agent, part: &Path, ctx: &RunCtx) -> Result<(), Attempt> {
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = agent.get(&self.url);
        if have > 0 {
            req = req.header("Range", &format!("bytes={have}-"));
        }
        let resp = req
            .call()
            .map_err(|e| Attempt::Retry(anyhow::Error::new(e)))?;
        let status = resp.status().as_u16();
        let length = |r: &ureq::http::Response<ureq::Body>| {
            r.headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let (mut file, start, total) = match status {
            200 => {
                let f = File::create(part).map_err(|e| Attempt::Fatal(e.into()))?;
                (f, 0, length(&resp))
            }
            206 => {
                let from = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if from != Some(have) {
                    let _ = fs::remove_file(part);
                    return Err(Attempt::Retry(anyhow::anyhow!(
                        "the server resumed at the wrong offset; starting over"
                    )));
                }
                let f = OpenOptions::new()
                    .append(true)
                    .open(part)
                    .map_err(|e| Attempt::Fatal(e.into()))?;
                (f, have, length(&resp).map(|l| l + have))
            }
            // Nothing left to fetch: the partial file is whole (the checksum will tell).
            416 if have > 0 => return Ok(()),
            408 | 429 | 500..=599 => {
                return Err(Attempt::Retry(anyhow::anyhow!(
                    "HTTP {status} from {}",
                    self.url
                )))
            }
            _ => {
                return Err(Attempt::Fatal(anyhow::anyhow!(
                    "HTTP {status} {} for {}; check the download stage's `url`",
                    resp.status().canonical_reason().unwrap_or(""),
                    self.url
                )))
            }
        };
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Err(Attempt::Retry(
                        anyhow::Error::new(e).context("the connection dropped"),
                    ))
                }
            };
            file.write_all(&buf[..n])
                .map_err(|e| Attempt::Fatal(e.into()))?;
            done += n as u64;
            ctx.progress_bytes(done, total.unwrap_or(done), "downloading");
        }
        file.sync_all().map_err(|e| Attempt::Fatal(e.into()))?;
        match total {
            Some(t) if done < t => Err(Attempt::Retry(anyhow::anyhow!(
                "the connection closed at {done} of {t} bytes"
            ))),
            _ => Ok(()),
        }
    }
}

/// Checks `path` against `expected` (skipped when empty); a downloaded file that fails is
/// deleted so the next build fetches it afresh.
fn check_md5(path: &Path, expected: &str, delete_on_mismatch: bool) -> anyhow::Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    let mut f = io::BufReader::new(File::open(path)?);
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != expected.to_ascii_lowercase() {
        let what = if delete_on_mismatch {
            let _ = fs::remove_file(path);
            "the downloaded file was deleted"
        } else {
            "the file was left as it is"
        };
        bail!(
            "checksum mismatch for {}: md5 is {got}, expected {expected}; {what}. A mirror with other bytes needs \
             its own `md5` in the download config",
            path.display()
        );
    }
    Ok(())
}

/// Extracts the batch files of a `cifar-10-binary.tar.gz` into `out` (flat).
fn extract(tarball: &Path, out: &Path) -> anyhow::Result<()> {
    let corrupt = |e: io::Error| {
        anyhow::anyhow!(
            "{}: the archive is truncated or corrupt ({e})",
            tarball.display()
        )
    };
    let gz = flate2::read::GzDecoder::new(io::BufReader::new(File::open(tarball)?));
    let mut archive = tar::Archive::new(gz);
    let wanted: Vec<&str> = wanted_files().collect();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(corrupt)?.into_owned();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| wanted.contains(n))
        else {
            continue;
        };
        let mut to = File::create(out.join(name))?;
        io::copy(&mut entry, &mut to).map_err(corrupt)?;
    }
    Ok(())
}

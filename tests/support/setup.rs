//! What every test starts from: the binaries under test, the repository,
//! the secret and keys of the servers tests start, and a temporary
//! directory.

use lottery::auth::{AgencyKey, Secret};
use std::path::{Path, PathBuf};

pub const SERVER: &str = env!("CARGO_BIN_EXE_server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_client");

/// The secret of the servers tests start (unless a test sets its own).
pub const TEST_SECRET: &str = "5ec2e7000000000000000000000000000000000000000000000000000000b0b0";

/// Agency `agency`'s key under [`TEST_SECRET`].
pub fn agency_key(agency: u32) -> AgencyKey {
    Secret::from_hex(TEST_SECRET).expect("test secret").agency_key(agency)
}

/// Whether a test's own settings set one of `keys` (then the defaults
/// these helpers add for it stay out).
pub(super) fn sets(env: &[(&str, &str)], keys: &[&str]) -> bool {
    env.iter().any(|(k, _)| keys.contains(k))
}

/// The repository root (configs live there).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // The counter keeps two directories made at once apart.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir()
            .join(format!("lottery-e2e-{name}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl TempDir {
    /// The directories [`TempDir::new`] made for `name` (a prefix of it)
    /// in test processes that no longer exist: a run killed with SIGKILL
    /// or Ctrl-C cannot remove its own. A directory of a process that still
    /// exists (another test binary running now) is not one of them. Empty
    /// without /proc, where that cannot be told.
    pub fn abandoned(name: &str) -> Vec<PathBuf> {
        if !Path::new("/proc/self").exists() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return Vec::new();
        };
        let prefix = format!("lottery-e2e-{name}");
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|n| n.starts_with(&prefix)) else {
                    return false;
                };
                // `...-<pid>-<nanos>-<n>`: the owner's pid is third from the end.
                name.rsplit('-').nth(2).and_then(|pid| pid.parse::<u32>().ok()).is_some_and(
                    |owner| {
                        owner != std::process::id()
                            && !Path::new(&format!("/proc/{owner}")).exists()
                    },
                )
            })
            .map(|entry| entry.path())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A number in `lo..hi` that changes from run to run (a "random point").
pub fn somewhere(lo: usize, hi: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    // The clock's low digits can be coarse: the process id mixes in.
    lo + (nanos / 1000 + std::process::id() as usize) % (hi - lo)
}

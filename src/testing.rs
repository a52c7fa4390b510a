//! Helpers shared by the unit tests of every module (compiled only for
//! tests): a fresh directory of their own for the tests that touch files.

use std::path::PathBuf;

/// A fresh, empty directory under the system's temp dir, named for the
/// test and unique to this process, thread and moment, so tests running
/// at once never share one.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "lottery-{name}-{}-{:?}-{nanos}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's directory");
    dir
}

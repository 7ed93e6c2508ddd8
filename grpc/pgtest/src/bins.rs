//! Where PostgreSQL's programs are: on `PATH` first, then in the newest
//! `/usr/lib/postgresql/VERSION/bin` (Debian keeps the server programs there, off `PATH`).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The versioned installations searched after `PATH`.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The programs a cluster needs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) initdb: PathBuf,
    pub(crate) pg_ctl: PathBuf,
    pub(crate) psql: PathBuf,
    pub(crate) pg_basebackup: PathBuf,
}

impl Binaries {
    /// Finds every program, or says which one is missing and where it was looked for.
    pub(crate) fn find() -> io::Result<Binaries> {
        Ok(Binaries {
            initdb: find("initdb")?,
            pg_ctl: find("pg_ctl")?,
            psql: find("psql")?,
            pg_basebackup: find("pg_basebackup")?,
        })
    }
}

pub(crate) fn find(name: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|dir| dir.join(name));
    let versioned = versioned_dirs().into_iter().map(|dir| dir.join(name));
    on_path
        .chain(versioned)
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "PostgreSQL's `{name}` is neither on PATH nor in {VERSIONED_ROOT}/*/bin \
                 (Debian: apt-get install postgresql)"
                ),
            )
        })
}

/// `/usr/lib/postgresql/*/bin`, newest version first.
fn versioned_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(VERSIONED_ROOT) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = parse_version(&entry.file_name())?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// "15" -> [15], "9.6" -> [9, 6]; anything else is not a version.
fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        assert_eq!(parse_version(OsStr::new("15")), Some(vec![15]));
        assert_eq!(parse_version(OsStr::new("9.6")), Some(vec![9, 6]));
        assert_eq!(parse_version(OsStr::new("common")), None);
        let mut v = [vec![9, 6], vec![15], vec![10]];
        v.sort_by(|a, b| b.cmp(a));
        assert_eq!(v, [vec![15], vec![10], vec![9, 6]]);
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = find("entitle-pgtest-no-such-program").expect_err("must not exist");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("entitle-pgtest-no-such-program"));
    }
}

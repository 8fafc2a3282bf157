//! The namespace directory, where posted services live (plan9port's
//! convention): `$NAMESPACE` if set, else `/tmp/ns.$USER.$DISPLAY`, with
//! `DISPLAY` taken as `:0` when unset (and a trailing `.0` dropped, as
//! plan9port does, so `:0.0` and `:0` name the same directory).

use std::ffi::CStr;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// The name of the user running this process.
pub(crate) fn user() -> String {
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            return u;
        }
    }
    // SAFETY: getpwuid returns a pointer to static storage or null; we copy
    // the name out at once. (It is not thread-safe against another
    // getpwuid, a risk plan9port takes too; USER is normally set.)
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned();
        }
        format!("{}", libc::getuid())
    }
}

/// The namespace directory's path (not created).
///
/// ```
/// let ns = thread9::srv::namespace();
/// match std::env::var_os("NAMESPACE").filter(|n| !n.is_empty()) {
///     Some(n) => assert_eq!(ns, std::path::PathBuf::from(n)),
///     // plan9port's default: /tmp/ns.$USER.$DISPLAY
///     None => assert!(ns.to_str().unwrap().starts_with("/tmp/ns.")),
/// }
/// ```
pub fn namespace() -> PathBuf {
    if let Some(ns) = std::env::var_os("NAMESPACE") {
        if !ns.is_empty() {
            return PathBuf::from(ns);
        }
    }
    let display = std::env::var("DISPLAY")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| ":0".into());
    let display = display
        .strip_suffix(".0")
        .unwrap_or(&display)
        .replace('/', "_");
    PathBuf::from(format!("/tmp/ns.{}.{}", user(), display))
}

/// The namespace directory, created mode 0700 if missing. An existing one
/// must be a directory we own that others cannot write to.
pub(crate) fn ensure_namespace() -> io::Result<PathBuf> {
    let dir = namespace();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {
            // The umask may have cut the mode; insist on 0700.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = std::fs::metadata(&dir)?;
            // SAFETY: getuid has no preconditions.
            let me = unsafe { libc::getuid() };
            if !md.is_dir() || md.uid() != me || md.mode() & 0o022 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "namespace {} is not a directory owned by us and closed to others",
                        dir.display()
                    ),
                ));
            }
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("namespace {}: {e}", dir.display()),
            ));
        }
    }
    Ok(dir)
}

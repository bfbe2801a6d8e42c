//! Facts about a root's filesystem: its type, its identity and whether it is a mount point.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The device and inode of a root, which change when it is replaced or unmounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// Reads the identity of `path`, following a symlink at the root as the watch does.
pub(crate) fn identity(path: &Path) -> io::Result<Identity> {
    let metadata = std::fs::metadata(path)?;
    Ok(Identity {
        dev: metadata.dev(),
        ino: metadata.ino(),
    })
}

/// Whether `path` sits on a different device than its parent folder.
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return true;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(own), Ok(above)) => own.dev() != above.dev(),
        _ => false,
    }
}

/// Filesystem magic numbers from `statfs(2)` whose changes made elsewhere never reach inotify:
/// network filesystems and FUSE, whose daemon may serve changes from another machine.
const NO_REMOTE_EVENTS: &[(i64, &str)] = &[
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x6573_5546, "fuse"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "ceph"),
    (0x5346_414F, "afs"),
    (0x7375_7245, "coda"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
];

/// Returns the filesystem name when `path` is on a filesystem that sends no events for
/// changes made by other machines or processes outside this kernel.
pub(crate) fn eventless_filesystem(path: &Path) -> io::Result<Option<&'static str>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `statfs` is plain data, for which all-zero bytes are a valid value.
    let mut info: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `info` is a
    // valid, writable `statfs` buffer.
    let status = unsafe { libc::statfs(c_path.as_ptr(), &raw mut info) };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    // `f_type` is signed on some targets; compare the low 32 bits as the magic numbers are.
    #[allow(clippy::cast_sign_loss, clippy::unnecessary_cast)]
    let magic = i64::from((info.f_type as u64 & 0xFFFF_FFFF) as u32);
    Ok(NO_REMOTE_EVENTS
        .iter()
        .find(|(number, _)| *number == magic)
        .map(|(_, name)| *name))
}

/// Reads `fs.inotify.max_user_watches`, for messages that tell the user what to raise.
pub(crate) fn max_user_watches() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_is_not_reported_as_eventless() {
        // The test machine's temporary folder is local (ext4 or tmpfs), never NFS or FUSE.
        let result = eventless_filesystem(&std::env::temp_dir());
        assert!(matches!(result, Ok(None)), "{result:?}");
    }

    #[test]
    fn missing_path_is_an_error() {
        assert!(eventless_filesystem(Path::new("/nonexistent/reelwatch")).is_err());
    }

    #[test]
    fn filesystem_root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }
}

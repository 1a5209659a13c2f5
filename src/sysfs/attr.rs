//! The few file operations every sysfs reader here is built from, each
//! costing as few system calls as the kernel allows: discovery of thousands
//! of functions is bound by syscalls, not by parsing.

use super::SysfsError;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::borrow::Cow;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

pub(crate) fn io_error(path: &Path, source: io::Error) -> SysfsError {
    SysfsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// sysfs serves an attribute in one page at most, and a read of a page
/// returns all of it at once.
const PAGE: usize = 4096;

/// Read a whole attribute, trimmed; None if it does not exist.
///
/// open + one read + close: no size probe (`fstat`) and no second read to
/// see end-of-file, because a read shorter than the buffer already means
/// the end for sysfs attributes and for regular files alike.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, SysfsError> {
    match std::fs::File::open(path) {
        Ok(file) => read_open(file).map_err(|e| io_error(path, e)).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn read_open(mut file: std::fs::File) -> io::Result<String> {
    let mut buf = [0u8; PAGE];
    let mut len = 0;
    let mut content = Vec::new();
    loop {
        let n = match file.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        if n == 0 || len < PAGE {
            break;
        }
        // a full page: not a sysfs attribute; keep reading to the end
        content.extend_from_slice(&buf[..len]);
        len = 0;
    }
    if content.is_empty() {
        // the usual case: one short read, no copy
        return Ok(String::from_utf8_lossy(&buf[..len]).trim().to_owned());
    }
    content.extend_from_slice(&buf[..len]);
    Ok(String::from_utf8_lossy(&content).trim().to_owned())
}

/// A directory opened once (`O_PATH`), so that each attribute below it
/// costs a lookup of its own few components instead of a walk of the whole
/// path: device directories sit ten components deep, and on a node with
/// thousands of VFs the walks were the larger part of discovery.
pub(crate) struct DirHandle {
    fd: OwnedFd,
    path: PathBuf,
}

impl DirHandle {
    pub fn open(path: &Path) -> Result<DirHandle, SysfsError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd =
            nix::fcntl::open(path, flags, Mode::empty()).map_err(|e| io_error(path, e.into()))?;
        Ok(DirHandle {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The attributes of the directory itself.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs {
            dir: self,
            sub: None,
        }
    }

    /// The attributes of its subdirectory `sub` (a VF among its siblings).
    pub fn attrs_of<'s>(&'s self, sub: &'s str) -> Attrs<'s> {
        Attrs {
            dir: self,
            sub: Some(sub),
        }
    }
}

/// Attribute reads in one device directory, relative to an open
/// [`DirHandle`]. Errors name the full path.
pub(crate) struct Attrs<'a> {
    dir: &'a DirHandle,
    sub: Option<&'a str>,
}

impl Attrs<'_> {
    fn relative<'n>(&self, name: &'n str) -> Cow<'n, str> {
        match self.sub {
            Some(sub) => Cow::Owned(format!("{sub}/{name}")),
            None => Cow::Borrowed(name),
        }
    }

    /// The full path of `name`, for messages.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path.join(self.relative(name).as_ref())
    }

    fn error(&self, name: &str, errno: Errno) -> SysfsError {
        io_error(&self.path(name), errno.into())
    }

    /// `name` may hold slashes (`net/eth0/type`).
    pub fn read_optional(&self, name: &str) -> Result<Option<String>, SysfsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let relative = self.relative(name);
        match nix::fcntl::openat(&self.dir.fd, relative.as_ref(), flags, Mode::empty()) {
            Ok(fd) => read_open(std::fs::File::from(fd))
                .map_err(|e| io_error(&self.path(name), e))
                .map(Some),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.error(name, e)),
        }
    }

    pub fn read_required(&self, name: &str) -> Result<String, SysfsError> {
        self.read_optional(name)?
            .ok_or_else(|| self.error(name, Errno::ENOENT))
    }

    pub fn read_number<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, SysfsError> {
        match self.read_optional(name)? {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| SysfsError::Parse {
                path: self.path(name),
                content: text,
                expected,
            }),
        }
    }

    pub fn read_link(&self, name: &str) -> Result<Option<PathBuf>, SysfsError> {
        match nix::fcntl::readlinkat(&self.dir.fd, self.relative(name).as_ref()) {
            Ok(target) => Ok(Some(PathBuf::from(target))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.error(name, e)),
        }
    }

    pub fn link_basename(&self, name: &str) -> Result<Option<String>, SysfsError> {
        Ok(self
            .read_link(name)?
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned())))
    }

    pub fn parse_link<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, SysfsError> {
        match self.link_basename(name)? {
            Some(target) => target.parse().map(Some).map_err(|_| SysfsError::Parse {
                path: self.path(name),
                content: target,
                expected,
            }),
            None => Ok(None),
        }
    }
}

/// A number attribute; None when absent, a parse error naming the path otherwise.
pub(crate) fn read_number<T: std::str::FromStr>(
    path: &Path,
    expected: &'static str,
) -> Result<Option<T>, SysfsError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| SysfsError::Parse {
            path: path.to_owned(),
            content: text,
            expected,
        }),
    }
}

/// A symlink's target as written; None if the link does not exist.
pub(crate) fn read_link(path: &Path) -> Result<Option<PathBuf>, SysfsError> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The last component of a symlink's target (`driver` → `iavf`); None if absent.
pub(crate) fn link_basename(path: &Path) -> Result<Option<String>, SysfsError> {
    Ok(read_link(path)?
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned())))
}

/// Entry names of a directory, sorted; empty if it does not exist.
pub(crate) fn list_dir(path: &Path) -> Result<Vec<String>, SysfsError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(
            entry
                .map_err(|e| io_error(path, e))?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

/// Where a relative sysfs link found in `link_dir` points, with the `..`
/// steps taken lexically. Valid because sysfs links only climb through real
/// directories (`bus/pci/devices`, `class/net`, a device's own directory),
/// and it makes every later lookup under the result skip those steps.
pub(crate) fn resolve_link(link_dir: &Path, target: &Path) -> PathBuf {
    if target.is_absolute() {
        return target.to_owned();
    }
    let mut path = link_dir.to_path_buf();
    for part in target.components() {
        match part {
            Component::ParentDir => {
                let last_is_normal =
                    matches!(path.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    path.pop();
                } else {
                    path.push("..");
                }
            }
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn link_targets_resolve_lexically_below_the_link() {
        assert_eq!(
            resolve_link(
                Path::new("/sys/bus/pci/devices"),
                Path::new("../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0")
            ),
            Path::new("/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0")
        );
        assert_eq!(
            resolve_link(Path::new("/a/pf"), Path::new("../0000:3b:01.0")),
            Path::new("/a/0000:3b:01.0")
        );
        // never climbs above a relative start
        assert_eq!(
            resolve_link(Path::new("x"), Path::new("../../y")),
            Path::new("../y")
        );
    }

    #[test]
    fn attributes_longer_than_a_page_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let text = "x".repeat(PAGE * 2 + 17);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        assert_eq!(read_optional(&path).unwrap().unwrap(), text);
        std::fs::write(&path, "x".repeat(PAGE)).unwrap();
        assert_eq!(read_optional(&path).unwrap().unwrap().len(), PAGE);
        assert_eq!(read_optional(&dir.path().join("absent")).unwrap(), None);
    }
}

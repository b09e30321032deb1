//! Files that are whole or absent: a private working directory that goes away however the
//! command ends, and a new file that takes its destination's name in one rename once it is
//! complete and on disk.

use std::{
    fs::{self, File},
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;

/// A 0700 directory beside `anchor`, removed with its contents when dropped (on an error or a
/// panic too). Its name carries the process id, so the next one made beside the same anchor
/// removes what a killed process (SIGKILL, Ctrl-C) left.
pub(super) struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    pub(super) fn beside(anchor: &Path) -> anyhow::Result<Self> {
        let prefix = hidden_name(anchor, "backup-work-")?;
        remove_abandoned(anchor, &prefix);
        let path = anchor.with_file_name(format!(
            "{prefix}{}-{}",
            std::process::id(),
            random_suffix()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create the working directory {}", path.display()))?;
        Ok(Self { path })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            eprintln!(
                "filmvault: could not remove {} (it holds an unencrypted copy of the \
                 database): {error}; remove it by hand",
                self.path.display()
            );
        }
    }
}

/// Working directories whose process is gone. A directory of a live process, or one whose
/// name does not parse, is left alone.
fn remove_abandoned(anchor: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent_dir(anchor)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        let gone = |pid| rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH);
        if pid.is_some_and(gone) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A file written under a temporary name beside its destination (created new, 0600), which
/// replaces the destination in one rename once synced; dropped before that, it is removed.
pub(super) struct StagedFile {
    path: PathBuf,
    destination: PathBuf,
    file: File,
    committed: bool,
}

impl StagedFile {
    pub(super) fn beside(destination: &Path) -> anyhow::Result<Self> {
        let prefix = hidden_name(destination, "partial-")?;
        let path = destination.with_file_name(format!("{prefix}{}", random_suffix()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path,
            destination: destination.to_owned(),
            file,
            committed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Puts the contents on disk (or a crash could leave the destination naming a file whose
    /// data never got there), renames over the destination, then syncs the directory so the
    /// rename itself survives a crash.
    pub(super) fn commit(mut self) -> anyhow::Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("cannot write {} to disk", self.path.display()))?;
        fs::rename(&self.path, &self.destination).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.path.display(),
                self.destination.display()
            )
        })?;
        self.committed = true;
        sync_dir(parent_dir(&self.destination))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes `path` if it is there.
pub(super) fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot write the directory {} to disk", dir.display()))
}

/// `.NAME.TAG`: beside NAME, hidden from a plain `ls`, and telling whose it is.
fn hidden_name(beside: &Path, tag: &str) -> anyhow::Result<String> {
    let name = beside
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} does not name a file", beside.display()))?;
    Ok(format!(".{name}.{tag}"))
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

//! A ConfigMap volume as the kubelet lays it out: each key is a symlink
//! through `..data` to a timestamped directory, and an update writes a new
//! directory and swaps `..data` to it (rename of a temporary symlink), then
//! removes the old one. The daemon's watches must follow exactly that.

use std::path::PathBuf;

pub struct ConfigMapDir {
    dir: PathBuf,
    key: String,
    generation: u32,
}

impl ConfigMapDir {
    /// The volume at `dir` with one key, `key`, holding `content`.
    pub fn new(dir: PathBuf, key: &str, content: &str) -> ConfigMapDir {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = ConfigMapDir {
            dir,
            key: key.to_owned(),
            generation: 0,
        };
        volume.publish(content);
        std::os::unix::fs::symlink(format!("..data/{key}"), volume.file()).unwrap();
        volume
    }

    /// The key's path, as a container sees it.
    pub fn file(&self) -> PathBuf {
        self.dir.join(&self.key)
    }

    pub fn publish(&mut self, content: &str) {
        self.generation += 1;
        let old = format!("..2026_12_05_00_00_{:02}", self.generation - 1);
        let new = format!("..2026_12_05_00_00_{:02}", self.generation);
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        std::fs::write(self.dir.join(&new).join(&self.key), content).unwrap();
        std::os::unix::fs::symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        let _ = std::fs::remove_dir_all(self.dir.join(old));
    }
}

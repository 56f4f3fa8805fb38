//! What the HJ 212-2025 profile adds to a platform link: the SM4 key ring with its rotation
//! (CN 1014), the logger's hardware identity for onboarding (CN 1001), and which commands are
//! encrypted. Which periods count as live (sent without `RF=1`, ahead of a backlog) is the
//! queue's business (`store::outbox`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::hj212::crypt::Key;

/// §6.4.4: the logger encrypts its data commands (CN 2000–2999), 1014 and 3020.
pub fn must_encrypt(cn: &str) -> bool {
    cn == "1014" || cn == "3020" || (cn.len() == 4 && cn.starts_with('2'))
}

/// Why a key could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },
    #[error("{0}: does not hold a 16-character SM4 key")]
    Malformed(PathBuf),
}

/// The link's keys: the one in force, and the one it replaced (the platform may still send a
/// frame under it). A rotated key is kept in the state folder, readable by the service only.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub current: Key,
    pub previous: Option<Key>,
    /// When the current key was created (Unix ms): the start of its 90 days.
    pub created_ms: i64,
    rotated_file: PathBuf,
}

fn read_key(path: &Path) -> Result<Key, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|reason| KeyError::Io { path: path.into(), reason })?;
    Key::from_text(text.trim_end_matches(['\r', '\n'])).ok_or_else(|| KeyError::Malformed(path.into()))
}

fn modified_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

impl KeyRing {
    /// The key in force: the last rotated one if there is one, else the registered key file.
    /// `created_ms` comes from the store (set at rotation), else the key file's modification time.
    pub fn load(
        registered: &Path,
        state_dir: &Path,
        link: &str,
        created_ms: Option<i64>,
    ) -> Result<KeyRing, KeyError> {
        let rotated_file = state_dir.join(format!("{link}.sm4key"));
        let (current, file) = if rotated_file.exists() {
            (read_key(&rotated_file)?, rotated_file.clone())
        } else {
            (read_key(registered)?, registered.to_path_buf())
        };
        let created_ms = created_ms.unwrap_or_else(|| modified_ms(&file));
        Ok(KeyRing { current, previous: None, created_ms, rotated_file })
    }

    /// Keys to try on incoming frames, current first.
    pub fn keys(&self) -> Vec<Key> {
        std::iter::once(self.current.clone()).chain(self.previous.clone()).collect()
    }

    /// Stores `new` (write to a temporary file readable by the owner only, fsync, rename), then
    /// makes it the key in force. On error nothing changes.
    pub fn rotate(&mut self, new: Key, created_ms: i64) -> Result<(), KeyError> {
        let io = |reason| KeyError::Io { path: self.rotated_file.clone(), reason };
        let tmp = self.rotated_file.with_extension("sm4key.tmp");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            f.write_all(new.expose().as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.rotated_file).map_err(io)?;
        if let Some(dir) = self.rotated_file.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.previous = Some(std::mem::replace(&mut self.current, new));
        self.created_ms = created_ms;
        Ok(())
    }
}

/// The logger's identity for CN 1001: logger ID (i23005), CPU ID (i23006), MAC 1 and 2
/// (i23007, i23008). Read from the machine; what cannot be read is sent empty.
pub fn hardware_ids(logger_id: Option<&str>) -> [String; 4] {
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim().to_string();
    // A Raspberry Pi reports its SoC serial in /proc/cpuinfo; elsewhere the machine ID stands in.
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Serial"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_uppercase())
        })
        .unwrap_or_else(|| machine_id.to_uppercase());
    let mut macs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name() != "lo")
                .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
                .map(|a| a.trim().replace(':', "").to_uppercase())
                .filter(|a| !a.is_empty() && a != "000000000000")
                .collect()
        })
        .unwrap_or_default();
    macs.sort();
    let id = logger_id.map(str::to_string).unwrap_or_else(|| machine_id.chars().take(24).collect());
    [id, cpu, macs.first().cloned().unwrap_or_default(), macs.get(1).cloned().unwrap_or_default()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encrypted_commands_are_data_1014_and_3020() {
        for cn in ["2011", "2051", "2061", "2031", "2081", "1014", "3020"] {
            assert!(must_encrypt(cn), "{cn}");
        }
        for cn in ["9011", "9012", "9013", "9014", "9015", "1001", "1011", "1013", "3021"] {
            assert!(!must_encrypt(cn), "{cn}");
        }
    }

    #[test]
    fn a_rotated_key_is_stored_owner_only_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let registered = dir.path().join("initial.key");
        std::fs::write(&registered, "0000000000000000\n").unwrap();
        let mut ring = KeyRing::load(&registered, dir.path(), "province", None).unwrap();
        assert_eq!(ring.current, Key::from_text("0000000000000000").unwrap());
        ring.rotate(Key::from_text("AbCdEfGh12345678").unwrap(), 42).unwrap();
        assert_eq!(ring.keys().len(), 2);
        let stored = dir.path().join("province.sm4key");
        assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
        let again = KeyRing::load(&registered, dir.path(), "province", Some(42)).unwrap();
        assert_eq!(again.current, Key::from_text("AbCdEfGh12345678").unwrap());
        assert_eq!(again.created_ms, 42);
    }
}

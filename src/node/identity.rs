//! The node's identity file: its Ed25519 and X25519 secrets, made once
//! from the OS's generator and kept in the data directory.

use std::path::Path;

use super::Error;
use crate::crypto::Identity;

/// Load the node's identity from `data_dir`, or create one.
pub fn load_identity(data_dir: &Path, puzzle: u8) -> Result<Identity, Error> {
    let err = |message: String| Error::DataDir {
        path: data_dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
    let path = data_dir.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            let secret: &[u8; 64] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| err("identity.key is not 64 bytes".into()))?;
            let identity = Identity::from_secret_bytes(secret);
            let solved = crate::crypto::puzzle_bits(&identity.identity_key());
            if solved < u32::from(puzzle) {
                return Err(err(format!(
                    "identity.key solves an id puzzle of {solved} bits, and this network asks \
                     for {puzzle} (remove it to make a new identity, and a new place on the ring)"
                )));
            }
            Ok(identity)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if puzzle >= 12 {
                tracing::info!("making a node identity (an id puzzle of {puzzle} bits)");
            }
            let identity = Identity::generate_solving(&mut rand::rngs::OsRng, puzzle);
            write_secret(&path, &identity.secret_bytes()[..]).map_err(|e| err(e.to_string()))?;
            Ok(identity)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Write a file atomically (through a temporary file and a rename).
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Write a secret file readable by its owner only, atomically.
pub(super) fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

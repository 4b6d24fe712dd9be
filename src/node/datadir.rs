//! The data directory's format mark: a node starts only on an empty
//! directory (which it makes its own) or on one an umbra node of a format
//! it reads made. Another program's directory, or one a newer umbra wrote,
//! is refused with a message that says why; nothing in it is touched.

use std::path::Path;

use super::Error;

/// The mark's file name, in the data directory.
pub const FORMAT_FILE: &str = "umbra-format";
/// The format this version writes and reads.
pub const FORMAT: u32 = 1;
/// What the mark says before its number.
const HEAD: &str = "umbra data directory, format ";
/// Files a node of the first format made before the mark existed: such a
/// directory is this program's, and gets the mark.
const KNOWN: [&str; 8] = [
    "identity.key",
    "store.redb",
    super::driver::GUARDS_FILE,
    super::driver::ONION_FILE,
    "identity.tmp",
    "guards.tmp",
    "onion.tmp",
    "umbra-format.tmp",
];

/// Check `dir` is one this node may use, making it (and its mark) if it
/// is new.
pub fn prepare(dir: &Path) -> Result<(), Error> {
    let err = |message: String| Error::DataDir {
        path: dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let mark = dir.join(FORMAT_FILE);
    match std::fs::read(&mark) {
        Ok(bytes) => {
            let format = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.trim_end().strip_prefix(HEAD))
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| {
                    err(format!(
                        "{FORMAT_FILE} is damaged; it should read \"{HEAD}{FORMAT}\""
                    ))
                })?;
            if format > FORMAT {
                return Err(err(format!(
                    "a newer umbra wrote this directory (format {format}); this one reads format {FORMAT}"
                )));
            }
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
    for entry in entries {
        let name = entry.map_err(|e| err(e.to_string()))?.file_name();
        let name = name.to_string_lossy();
        if !KNOWN.contains(&name.as_ref()) {
            return Err(err(format!(
                "not an umbra data directory (it holds {name:?}, which umbra did not make); \
                 give an empty directory or one an umbra node made"
            )));
        }
    }
    super::identity::write_file(&mark, format!("{HEAD}{FORMAT}\n").as_bytes())
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(dir: &Path) -> String {
        match prepare(dir) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{} was taken", dir.display()),
        }
    }

    #[test]
    fn a_new_directory_is_marked_and_a_marked_one_is_taken() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        prepare(&dir).unwrap();
        let mark = std::fs::read_to_string(dir.join(FORMAT_FILE)).unwrap();
        assert_eq!(mark, format!("{HEAD}{FORMAT}\n"));
        std::fs::write(dir.join("store.redb"), b"x").unwrap();
        prepare(&dir).unwrap();
        // A directory of the first format, from before the mark, gets it.
        let old = tempfile::tempdir().unwrap();
        std::fs::write(old.path().join("identity.key"), [0u8; 64]).unwrap();
        prepare(old.path()).unwrap();
        assert!(old.path().join(FORMAT_FILE).exists());
    }

    #[test]
    fn foreign_newer_and_damaged_directories_are_refused_untouched() {
        let foreign = tempfile::tempdir().unwrap();
        std::fs::write(foreign.path().join("thesis.tex"), b"chapter 1").unwrap();
        let e = refused(foreign.path());
        assert!(e.contains("not an umbra data directory"), "{e}");
        assert!(e.contains("thesis.tex"), "{e}");
        assert!(
            !foreign.path().join(FORMAT_FILE).exists(),
            "nothing written"
        );
        assert_eq!(
            std::fs::read(foreign.path().join("thesis.tex")).unwrap(),
            b"chapter 1"
        );

        let newer = tempfile::tempdir().unwrap();
        std::fs::write(newer.path().join(FORMAT_FILE), format!("{HEAD}7\n")).unwrap();
        let e = refused(newer.path());
        assert!(e.contains("newer umbra") && e.contains("format 7"), "{e}");

        let damaged = tempfile::tempdir().unwrap();
        std::fs::write(damaged.path().join(FORMAT_FILE), b"\xff\x00").unwrap();
        let e = refused(damaged.path());
        assert!(e.contains("damaged"), "{e}");
    }
}

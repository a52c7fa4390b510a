//! Who an agency is: the server's secret, each agency's key derived from it,
//! and the challenge–response MAC of the handshake.
//!
//! The server holds one secret (32 random bytes, written as 64 hex
//! characters) and needs no table of keys: agency N's key is
//! HMAC-SHA256(secret, "agency:N"). In the handshake the server sends a
//! fresh 32-byte nonce and the agency answers HMAC-SHA256(key, nonce ‖
//! agency ‖ version), so the key never crosses the wire and an overheard
//! answer is worthless on another connection (another nonce). Answers are
//! compared in constant time. Byte layout: `docs/PROTOCOL.md`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a secret, a key, a nonce and a MAC.
pub const LEN: usize = 32;

/// A nonce sent in CHALLENGE.
pub type Nonce = [u8; LEN];

/// An agency's answer in AUTH.
pub type Tag = [u8; LEN];

/// Why a text is not 32 bytes written as 64 hex characters. Never
/// repeats the text (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexError {
    /// Not 64 characters (surrounding whitespace aside).
    Length(usize),
    /// The character at this position (0-based) is not a hex digit.
    NotHex(usize),
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length(n) => {
                write!(f, "must be 64 hexadecimal characters, found {n} characters")
            }
            HexError::NotHex(at) => {
                write!(f, "must be 64 hexadecimal characters; character {} is not one", at + 1)
            }
        }
    }
}

impl std::error::Error for HexError {}

/// Parses 64 hex characters (either case; surrounding whitespace, such
/// as a file's final newline, is ignored) into 32 bytes.
///
/// # Errors
/// Another length, or a character that is not a hex digit.
pub fn parse_hex32(text: &str) -> Result<[u8; LEN], HexError> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars != 2 * LEN || text.len() != 2 * LEN {
        return Err(HexError::Length(chars));
    }
    let digit = |at: usize| -> Result<u8, HexError> {
        let c = text.as_bytes()[at];
        (c as char).to_digit(16).map(|d| d as u8).ok_or(HexError::NotHex(at))
    };
    let mut out = [0u8; LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (digit(2 * i)? << 4) | digit(2 * i + 1)?;
    }
    Ok(out)
}

/// 32 bytes as 64 lower-case hex characters.
pub fn to_hex(bytes: &[u8; LEN]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(2 * LEN);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The server's secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from its 64 hex characters.
    ///
    /// # Errors
    /// See [`parse_hex32`].
    pub fn from_hex(text: &str) -> Result<Secret, HexError> {
        parse_hex32(text).map(Secret)
    }

    /// A secret from its 32 bytes.
    pub fn from_bytes(bytes: [u8; LEN]) -> Secret {
        Secret(bytes)
    }

    /// Agency `agency`'s key: HMAC-SHA256(secret, "agency:" + decimal).
    pub fn agency_key(&self, agency: u32) -> AgencyKey {
        let label = format!("agency:{agency}");
        AgencyKey(hmac(&self.0, &[label.as_bytes()]).finalize().into_bytes().into())
    }
}

/// One agency's key. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AgencyKey([u8; LEN]);

impl fmt::Debug for AgencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgencyKey(..)")
    }
}

impl AgencyKey {
    /// A key from its 64 hex characters.
    ///
    /// # Errors
    /// See [`parse_hex32`].
    pub fn from_hex(text: &str) -> Result<AgencyKey, HexError> {
        parse_hex32(text).map(AgencyKey)
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; LEN]) -> AgencyKey {
        AgencyKey(bytes)
    }

    /// The key as 64 hex characters (what an operator hands the agency).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    fn keyed(&self, nonce: &Nonce, agency: u32, version: u8) -> HmacSha256 {
        hmac(&self.0, &[nonce, &agency.to_be_bytes(), &[version]])
    }

    /// The answer to a CHALLENGE: HMAC-SHA256(key, nonce ‖ agency (u32,
    /// big-endian) ‖ version (u8)).
    pub fn tag(&self, nonce: &Nonce, agency: u32, version: u8) -> Tag {
        self.keyed(nonce, agency, version).finalize().into_bytes().into()
    }

    /// Whether `tag` answers `nonce` for `agency` and `version`, compared
    /// in constant time (`hmac`'s `verify_slice`), so the time taken tells
    /// an attacker nothing about how many bytes were right.
    pub fn verify(&self, nonce: &Nonce, agency: u32, version: u8, tag: &[u8]) -> bool {
        self.keyed(nonce, agency, version).verify_slice(tag).is_ok()
    }
}

/// A fresh nonce from the operating system's randomness.
///
/// # Errors
/// The OS could not provide random bytes.
pub fn nonce() -> Result<Nonce, getrandom::Error> {
    let mut n = [0u8; LEN];
    getrandom::fill(&mut n)?;
    Ok(n)
}

/// Whether the server asks agencies to prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAuth {
    /// HELLO → CHALLENGE → AUTH → HELLO_OK, with keys derived from this.
    Required(Secret),
    /// HELLO → HELLO_OK: anyone may speak for any agency (the course's
    /// exercises only).
    Off,
}

/// Reads a file holding a secret or a key, refusing one that others than
/// its owner may read or write (as ssh does with private keys).
///
/// # Errors
/// An unreadable file or one open to others, as a message for the key
/// that named it. Never includes the file's contents.
pub fn read_private_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} has mode {mode:04o}: others than its owner may read it; chmod 600 it",
                path.display()
            ));
        }
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the server's secret file at `path`, first creating it with a
/// fresh secret (32 random bytes as 64 hex characters, mode 0600) if there
/// is none. Returns its text and whether this call created it.
///
/// The file is written and synced under a temporary name and then linked
/// into place, so `path` never holds a half-written secret (a crash leaves
/// at most the temporary file), and of two servers starting at once one
/// creates it and the other reads it.
///
/// # Errors
/// As [`read_private_file`], or the file cannot be created, written or
/// synced (a missing directory, no permission, no randomness).
pub fn read_or_create_secret(path: &Path) -> Result<(String, bool), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(text) = create_secret(path)? {
                return Ok((text, true));
            }
        }
        _ => {}
    }
    read_private_file(path).map(|text| (text, false))
}

/// Creates the secret file at `path`; `None` if another process created it
/// first.
fn create_secret(path: &Path) -> Result<Option<String>, String> {
    use std::io::Write;
    let shown = path.display();
    let mut bytes = [0u8; LEN];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a secret: {e}"))?;
    let text = format!("{}\n", to_hex(&bytes));
    // The temporary name is this process's own: one a crashed process of
    // the same id left (a container's server is always process 1) is
    // stale, and removed.
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        other => other.map(|()| true),
    });
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => return Err(format!("cannot create {shown}: {e}")),
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync the directory of {shown}: {e}"))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn hex_parsing_takes_64_hex_digits_and_nothing_else() {
        let s = parse_hex32(&format!("  {}\n", SECRET.to_uppercase())).unwrap();
        assert_eq!(s[0], 0);
        assert_eq!(s[31], 0x1f);
        assert_eq!(to_hex(&s), SECRET);
        assert_eq!(parse_hex32(""), Err(HexError::Length(0)));
        assert_eq!(parse_hex32(&SECRET[..62]), Err(HexError::Length(62)));
        assert_eq!(parse_hex32(&format!("{SECRET}00")), Err(HexError::Length(66)));
        let bad = format!("{}g{}", &SECRET[..10], &SECRET[11..]);
        assert_eq!(parse_hex32(&bad), Err(HexError::NotHex(10)));
        // 64 characters but more bytes: no panic on a char boundary.
        let wide = format!("{}é", &SECRET[..63]);
        assert!(parse_hex32(&wide).is_err());
        assert!(!HexError::NotHex(10).to_string().contains(&bad));
    }

    /// Fixed vectors, computed independently (Python's `hmac` module):
    /// `hmac.new(secret, b"agency:3", sha256)` and then
    /// `hmac.new(key, nonce + (3).to_bytes(4, "big") + bytes([1]), sha256)`
    /// with the nonce 0x20, 0x21, ..., 0x3f.
    #[test]
    fn keys_and_tags_match_fixed_vectors() {
        let secret = Secret::from_hex(SECRET).unwrap();
        let key = secret.agency_key(3);
        assert_eq!(
            key.to_hex(),
            "63bcf7d7cb3fab3edcf35fc6bae7701d164a2f8e55e0ef44ea903541e04dc446"
        );
        let nonce: Nonce = std::array::from_fn(|i| 0x20 + i as u8);
        let tag = key.tag(&nonce, 3, 1);
        assert_eq!(
            to_hex(&tag),
            "8a1ff715c769a6760201737c5ee0b9ba0b4d284789eb56518ae58e02055773dc"
        );
        assert!(key.verify(&nonce, 3, 1, &tag));
    }

    #[test]
    fn a_tag_verifies_only_for_its_key_nonce_agency_and_version() {
        let secret = Secret::from_hex(SECRET).unwrap();
        let (k2, k3) = (secret.agency_key(2), secret.agency_key(3));
        assert_ne!(k2, k3);
        let nonce = nonce().unwrap();
        let tag = k3.tag(&nonce, 3, 1);
        assert!(k3.verify(&nonce, 3, 1, &tag));
        assert!(!k2.verify(&nonce, 3, 1, &tag), "another agency's key");
        assert!(!k3.verify(&nonce, 2, 1, &tag), "another agency claimed");
        assert!(!k3.verify(&nonce, 3, 2, &tag), "another version");
        let other = self::nonce().unwrap();
        assert_ne!(nonce, other, "fresh nonces");
        assert!(!k3.verify(&other, 3, 1, &tag), "replayed on another nonce");
        let mut flipped = tag;
        flipped[31] ^= 1;
        assert!(!k3.verify(&nonce, 3, 1, &flipped));
        assert!(!k3.verify(&nonce, 3, 1, &tag[..31]), "short tag");
        assert!(!k3.verify(&nonce, 3, 1, &[]), "empty tag");
    }

    #[test]
    fn secrets_and_keys_never_show_in_debug() {
        let secret = Secret::from_hex(SECRET).unwrap();
        let shown = format!("{secret:?} {:?}", secret.agency_key(1));
        assert_eq!(shown, "Secret(..) AgencyKey(..)");
    }

    #[cfg(unix)]
    #[test]
    fn private_files_must_be_closed_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::testing::temp_dir("auth");
        let path = dir.join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_file(&path).unwrap_err();
        assert!(err.contains("0644") && !err.contains(SECRET), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_file(&path).unwrap().trim(), SECRET);
        assert!(read_private_file(&dir.join("missing")).is_err());
        assert!(read_private_file(&dir).is_err(), "a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The default secret: created once, closed to others, random, whole
    /// (no temporary file left), and read back unchanged afterwards.
    #[cfg(unix)]
    #[test]
    fn the_default_secret_is_created_once_closed_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::testing::temp_dir("secret");
        let path = dir.join("lottery.secret");
        let (text, created) = read_or_create_secret(&path).unwrap();
        assert!(created);
        assert!(parse_hex32(&text).is_ok(), "64 hex characters");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(read_or_create_secret(&path).unwrap(), (text.clone(), false));
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["lottery.secret"], "no temporary file left");
        // Another place, another secret: there is no fixed default.
        let other = dir.join("other.secret");
        assert_ne!(read_or_create_secret(&other).unwrap().0, text);
        // A file open to others is refused, not replaced.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_or_create_secret(&path).unwrap_err();
        assert!(err.contains("chmod 600") && !err.contains(text.trim()), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // A directory that does not exist is an error naming the file.
        let err = read_or_create_secret(&dir.join("none/lottery.secret")).unwrap_err();
        assert!(err.contains("cannot create") && err.contains("none/lottery.secret"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

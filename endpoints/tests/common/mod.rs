//! What the integration tests of this crate share.

/// The built-in prefixes the enabled features register, sorted.
pub fn builtin_kinds(extra: &[&'static str]) -> Vec<&'static str> {
    let mut kinds = vec!["haproxy", "systemd", "tcp", "tcp6", "unix"];
    if cfg!(feature = "tls") {
        kinds.extend(["ssl", "tls", "txsni"]);
    }
    if cfg!(feature = "acme") {
        kinds.extend(["le", "lets", "txacme"]);
    }
    kinds.extend_from_slice(extra);
    kinds.sort_unstable();
    kinds
}

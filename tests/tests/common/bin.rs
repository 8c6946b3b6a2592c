//! The `parti` binary for the tests that run it as a process: `$PARTI_BIN`, or built with
//! `cargo build -p parti --bin parti --features cli,testing` on the first use and taken from the target directory of
//! the test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `parti` binary: `$PARTI_BIN`, or built once per test process.
pub fn parti_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PARTI_BIN") {
            return PathBuf::from(bin);
        }
        // This test runs from <target>/<profile>/deps/; cargo build puts the binary in
        // <target>/<profile>.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>");
        // At run time first: a test binary reused by another checkout that shares the target
        // directory must build that checkout, not the one it was compiled in.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let workspace = manifest_dir.join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        // `cli` builds the binary; `testing` too, so that the library is the very one this test
        // build links (tests/Cargo.toml enables both) and nothing is compiled twice.
        build
            .args(["build", "--quiet", "-p", "parti", "--bin", "parti"])
            .args(["--features", "cli,testing"])
            .current_dir(&workspace);
        // Cargo describes this test's package in the environment; passed on, that would make
        // build scripts watching it (ring watches CARGO_MANIFEST_DIR) rerun, and every normal
        // build after this one rebuild the TLS stack again.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&key.as_ref())
                || ["CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR"]
                    .contains(&key.as_ref())
            {
                build.env_remove(key.as_ref());
            }
        }
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let out = build.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cannot build the parti binary (set PARTI_BIN to use another one):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join("parti");
        assert!(bin.is_file(), "no parti binary at {}", bin.display());
        bin
    })
}

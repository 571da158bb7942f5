//! Links the test binaries with an rpath to the build interpreter's libpython, and records
//! which interpreter that was, so the embedded CPython is the one whose packages pip
//! installed (see DESIGN.md, "A trap seen on this machine").
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    if let Some(executable) = config.executable() {
        println!("cargo:rustc-env=TORSION_BUILD_PYTHON={executable}");
    }
    println!(
        "cargo:rustc-env=TORSION_BUILD_PYTHON_VERSION={}",
        config.version()
    );
    // The workspace's .cargo/config.toml passes --cfg tokio_unstable; a RUSTFLAGS variable
    // replaces that list, and the build would quietly lose the scheduler setting that
    // HTTP/2 throughput depends on (see torsion_wsgi::runtime_builder).
    if std::env::var_os("CARGO_CFG_TOKIO_UNSTABLE").is_none() {
        println!(
            "cargo:warning=torsion-wsgi built without --cfg tokio_unstable: tokio keeps its \
             LIFO slot and HTTP/2 serves about half as many requests; add the flag to RUSTFLAGS"
        );
    }
}

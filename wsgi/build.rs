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
}

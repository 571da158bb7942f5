//! Links `torsion` with an rpath to the build interpreter's libpython, so the binary loads
//! that library (and its packages) without LD_LIBRARY_PATH.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}

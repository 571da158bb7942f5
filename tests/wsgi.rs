//! PEP 3333 behaviour.
mod common;

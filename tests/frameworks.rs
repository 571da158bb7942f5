//! Framework applications.
mod common;

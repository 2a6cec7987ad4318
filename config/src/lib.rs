//! Typed configuration for freezeframe.

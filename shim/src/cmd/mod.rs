//! One module per subcommand: argument parsing and output, no logic of their own.

pub mod cancel;
pub mod commit;
pub mod demo;
pub mod inspect;
pub mod oci;
pub mod push;
pub mod serve;
pub mod status;
pub mod tasks;
pub mod thaw;

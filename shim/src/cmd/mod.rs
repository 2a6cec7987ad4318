//! One module per subcommand: argument parsing and output, no logic of their own.

pub mod commit;
pub mod demo;
pub mod inspect;
pub mod thaw;

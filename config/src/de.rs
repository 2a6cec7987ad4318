//! Deserializers for the values TOML has no native type for: durations, octal
//! file modes and group references. Range checks live in `validate.rs`, where the
//! key can be named; these only turn text into values.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::Group;

/// A humantime string: `"10s"`, `"500ms"`, `"1m 30s"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration such as "10s" or "500ms""#)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text)
                .map_err(|err| E::custom(format!("invalid duration {text:?}: {err}")))
        }
    }

    deserializer.deserialize_str(DurationVisitor)
}

/// A file mode: an octal string (`"0660"`, `"660"`, `"0o660"`) or an integer
/// (`0o660` in TOML; a decimal `660` is taken as the number it is).
pub(crate) fn mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct ModeVisitor;

    impl Visitor<'_> for ModeVisitor {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a file mode such as "0660" or 0o660"#)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u32, E> {
            let digits = text.strip_prefix("0o").unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(E::custom(format!(
                    r#"invalid file mode {text:?}: expected octal digits such as "0660""#
                )));
            }
            u32::from_str_radix(digits, 8)
                .map_err(|_| E::custom(format!("invalid file mode {text:?}: too large")))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u32, E> {
            u32::try_from(value)
                .map_err(|_| E::custom(format!("invalid file mode {value}: out of range")))
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u32, E> {
            u32::try_from(value)
                .map_err(|_| E::custom(format!("invalid file mode {value}: out of range")))
        }
    }

    deserializer.deserialize_any(ModeVisitor)
}

/// A group name (`"freezeframe"`) or a numeric gid (`998` or `"998"`).
impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GroupVisitor;

        impl Visitor<'_> for GroupVisitor {
            type Value = Group;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a group name or a numeric gid")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Group, E> {
                if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                    let gid = text
                        .parse()
                        .map_err(|_| E::custom(format!("invalid gid {text:?}: out of range")))?;
                    return Ok(Group::Gid(gid));
                }
                Ok(Group::Name(text.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Group, E> {
                u32::try_from(value)
                    .map(Group::Gid)
                    .map_err(|_| E::custom(format!("invalid gid {value}: out of range")))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Group, E> {
                u32::try_from(value)
                    .map(Group::Gid)
                    .map_err(|_| E::custom(format!("invalid gid {value}: out of range")))
            }
        }

        deserializer.deserialize_any(GroupVisitor)
    }
}

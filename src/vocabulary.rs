//! One vocabulary: each enum a person names (a recipe, a loss, an ODE solver, a schedule) has
//! one table of names, which checkpoint metadata, `cm`'s flags, the session and the page all
//! read and write through [`Named`], so no two places spell a value differently.

use crate::{Error, Result};

/// An enum with one name per variant.
pub trait Named: Copy + 'static {
    /// What the values are, for messages: "recipe", "loss", "ODE solver".
    const WHAT: &'static str;
    /// Every variant with its name, in the order messages list them. A variant with fields
    /// stands for all its values; the fields given are those [`Named::parse`] returns.
    const NAMES: &'static [(Self, &'static str)];

    /// The variant's name.
    fn name(self) -> &'static str {
        let variant = std::mem::discriminant(&self);
        Self::NAMES
            .iter()
            .find(|(value, _)| std::mem::discriminant(value) == variant)
            .map(|&(_, name)| name)
            .expect("every variant is in NAMES")
    }

    /// The value named `name`, or an error that lists the names.
    fn parse(name: &str) -> Result<Self> {
        Self::NAMES.iter().find(|&&(_, n)| n == name).map(|&(value, _)| value).ok_or_else(|| {
            let names: Vec<&str> = Self::NAMES.iter().map(|&(_, n)| n).collect();
            let list = match names.split_last() {
                Some((last, [])) => last.to_string(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            };
            Error::Invalid(format!("unknown {} '{name}': {list}", Self::WHAT))
        })
    }
}

//! sqlparser's identifiers and names as PostgreSQL reads them: unquoted parts folded to lower
//! case. Shared by the converter and the definitions.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use crate::sql::Name;

/// Folds an identifier the way PostgreSQL does: unquoted names are lower-cased.
pub fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub fn name(n: &ObjectName) -> Name {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => ident(i),
                ObjectNamePart::Function(f) => ident(&f.name),
            })
            .collect();
    match parts.as_slice() {
        [] => Name::new(None, ""),
        [one] => Name::new(None, one),
        [.., schema, last] => Name::new(Some(schema), last),
    }
}

//! Object names as zdm keeps them, and as it shows them to people. A leaf: `parse` produces
//! names, the rest of `sql` renders them into generated SQL (always quoted, through
//! [`super::Qualified`]); `Display` here is for messages and plans (bare where that reads back
//! the same).

use std::fmt;

/// A possibly schema-qualified object name, with unquoted identifiers folded to lower case as
/// PostgreSQL does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn new(schema: Option<&str>, name: &str) -> Name {
        Name {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// A name in the same schema as `other`.
    pub fn in_schema_of(other: &Name, name: &str) -> Name {
        Name {
            schema: other.schema.clone(),
            name: name.to_owned(),
        }
    }

    /// Reads back what `Display` writes: `schema.name`, each part bare or `"quoted"`.
    pub fn parse_display(text: &str) -> Option<Name> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    parts.last_mut()?.push('"');
                }
                '"' => quoted = !quoted,
                '.' if !quoted => parts.push(String::new()),
                c => parts.last_mut()?.push(c),
            }
        }
        match parts.as_slice() {
            [name] => Some(Name::new(None, name)),
            [schema, name] => Some(Name::new(Some(schema), name)),
            _ => None,
        }
    }

    /// The name without `public.`, so `public.users` and `users` compare equal.
    pub fn key(&self) -> Name {
        match self.schema.as_deref() {
            Some("public") | None => Name::new(None, &self.name),
            Some(_) => self.clone(),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", display_ident(schema))?;
        }
        write!(f, "{}", display_ident(&self.name))
    }
}

/// Shows an identifier the way a user would write it: bare when that reads back the same.
pub fn display_ident(ident: &str) -> String {
    let plain = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod name_tests {
    use super::Name;

    #[test]
    fn display_reads_back() {
        for name in [
            Name::new(None, "users"),
            Name::new(Some("My Schema"), "a\"b.c"),
            Name::new(Some("app"), "名前"),
        ] {
            assert_eq!(Name::parse_display(&name.to_string()), Some(name));
        }
    }
}

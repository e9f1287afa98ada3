//! HTML without a template engine: every value goes through [`esc`], which
//! escapes the five characters that matter in text and in quoted attribute
//! values. Markup is written only as literals in this crate.

use std::fmt::{self, Write as _};

/// Escapes `&`, `<`, `>`, `"` and `'` for text and double- or single-quoted
/// attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a value for a URL query component (then [`esc`] for the attribute).
pub fn query(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A page being written.
#[derive(Default)]
pub struct Page {
    pub body: String,
}

impl Page {
    /// Appends trusted markup (a literal of this crate).
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.body.push_str(markup);
        self
    }

    /// Appends escaped text.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.body.push_str(&esc(s));
        self
    }
}

impl fmt::Write for Page {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.body.push_str(s);
        Ok(())
    }
}

/// `<input type="hidden">` with an escaped value.
pub fn hidden(name: &str, value: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<input type="hidden" name="{}" value="{}">"#,
        esc(name),
        esc(value)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("plain 4242 12/29"), "plain 4242 12/29");
        assert_eq!(
            hidden("a\"b", "<v>"),
            r#"<input type="hidden" name="a&quot;b" value="&lt;v&gt;">"#
        );
        assert_eq!(query("4242 12/29&x=<"), "4242+12%2F29%26x%3D%3C");
    }
}

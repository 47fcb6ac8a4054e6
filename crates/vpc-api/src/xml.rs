//! A small XML writer for EC2's response shapes.

use std::fmt::Write as _;

pub const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Whether XML 1.0 can carry the character at all.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends escaped text; characters XML cannot carry are dropped.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if !is_xml_char(c) => {}
            c => out.push(c),
        }
    }
}

/// Builds one response body.
#[derive(Debug, Default)]
pub struct Xml {
    pub out: String,
}

impl Xml {
    /// `<{action}Response xmlns=…><requestId>…</requestId>`
    pub fn response(action: &str, request_id: &str) -> Xml {
        let mut x = Xml {
            out: String::with_capacity(1024),
        };
        let _ = write!(
            x.out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NS}\">"
        );
        x.leaf("requestId", request_id);
        x
    }

    pub fn finish(mut self, action: &str) -> String {
        let _ = write!(self.out, "</{action}Response>");
        self.out
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    pub fn leaf(&mut self, tag: &str, value: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.out, value);
        self.close(tag)
    }

    pub fn opt(&mut self, tag: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
        self
    }

    pub fn num(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Self {
        self.open(tag);
        let _ = write!(self.out, "{value}");
        self.close(tag)
    }

    pub fn bool(&mut self, tag: &str, v: bool) -> &mut Self {
        self.leaf(tag, if v { "true" } else { "false" })
    }

    pub fn empty(&mut self, tag: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push_str("/>");
        self
    }

    /// `<tag><item>…</item>…</tag>`, or `<tag/>` when empty.
    pub fn set<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        let start = self.out.len();
        self.open(tag);
        let mut any = false;
        for it in items {
            any = true;
            self.open("item");
            f(self, it);
            self.close("item");
        }
        if any {
            self.close(tag)
        } else {
            self.out.truncate(start);
            self.empty(tag)
        }
    }

    /// `<tagSet>` of key/value items.
    pub fn tags(&mut self, tags: &[vpc_model::Tag]) -> &mut Self {
        self.set("tagSet", tags, |x, t| {
            x.leaf("key", &t.key).leaf("value", &t.value);
        })
    }
}

/// The EC2 error envelope.
pub fn error_body(code: &str, message: &str, request_id: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>");
    escape_into(&mut out, code);
    out.push_str("</Code><Message>");
    escape_into(&mut out, message);
    out.push_str("</Message></Error></Errors><RequestID>");
    escape_into(&mut out, request_id);
    out.push_str("</RequestID></Response>");
    out
}

/// Timestamps as EC2 writes them: `2014-02-18T14:37:25.000Z`.
pub fn timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let mut x = Xml::response("DescribeVpcs", "r-1");
        x.set("vpcSet", Vec::<u8>::new(), |_, _| {});
        x.leaf("a", "<&>");
        let s = x.finish("DescribeVpcs");
        assert!(s.contains("<vpcSet/>"));
        assert!(s.contains("<a>&lt;&amp;&gt;</a>"));
        assert_eq!(timestamp(1_392_734_245_000), "2014-02-18T14:37:25.000Z");
        assert!(error_body("X", "a<b", "id").contains("<Message>a&lt;b</Message>"));
    }
}

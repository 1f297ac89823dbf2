//! File names from clients, made safe to store and to send back in `Content-Disposition`.

/// Longest name kept, in bytes (cut at a character boundary).
const MAX_NAME_BYTES: usize = 200;

/// The last path component of `raw` (either slash), without control or format characters,
/// trimmed, at most [`MAX_NAME_BYTES`]; `"file"` if nothing is left, and never `.` or `..`.
pub(super) fn sanitise(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'))
        .collect();
    let mut name = cleaned.trim().to_string();
    if name.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name = name.trim_end().to_string();
    }
    if name.is_empty() || name.chars().all(|c| c == '.') {
        return "file".into();
    }
    name
}

/// A `Content-Disposition` value naming `name`: an ASCII fallback and the exact UTF-8 name
/// (RFC 6266 / RFC 8187).
pub(super) fn disposition(kind: &str, name: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const ATTR: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}", utf8_percent_encode(name, ATTR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitise("../../etc/passwd"), "passwd");
        assert_eq!(sanitise("C:\\Users\\me\\photo.jpg"), "photo.jpg");
        assert_eq!(sanitise("a\u{0}b\nc\u{202e}gpj.exe"), "abcgpj.exe");
        assert_eq!(sanitise("  .. "), "file");
        assert_eq!(sanitise("dir/"), "file");
        assert_eq!(sanitise(""), "file");
        let long = "é".repeat(300);
        let s = sanitise(&long);
        assert!(s.len() <= MAX_NAME_BYTES && s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn dispositions() {
        assert_eq!(disposition("inline", "a b.txt"), "inline; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt");
        assert_eq!(
            disposition("attachment", "été \"x\".pdf"),
            "attachment; filename=\"_t_ _x_.pdf\"; filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.pdf"
        );
    }
}

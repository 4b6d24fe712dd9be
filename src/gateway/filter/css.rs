//! The filter of style sheets: every URL in them (`url()`, `src()`,
//! `@import`, the strings of `image-set()`) judged as [`super::refs`]
//! judges links, read by a CSS tokenizer the way a browser reads it
//! (escapes included: `u\72l(` is `url(`).

use cssparser::{Parser, ParserInput, ToCss, Token};

use super::refs::{judge, Use, Verdict};

/// Blocks nested deeper than this are left out: no style needs them, and
/// walking them would take stack.
const DEPTH: usize = 32;

/// What stands for a URL that goes: an empty `data:` URL, which loads
/// nothing.
const NOTHING: &str = "\"data:,\"";
/// The same, for a `url(...)` written without quotes: written so too,
/// since `url("...")` is a function, a block one deeper, and a sheet at
/// [`DEPTH`] would then lose it when filtered again.
const NO_URL: &str = "url(data:,)";

/// Filter a style sheet, or a `style` attribute's declarations.
pub fn filter(css: &str) -> String {
    let mut input = ParserInput::new(css);
    let mut parser = Parser::new(&mut input);
    let mut out = String::with_capacity(css.len());
    walk(&mut parser, &mut out, Within::Other, 0);
    out
}

/// Filter a style sheet to go inside an HTML `<style>` element: no `<`
/// is left that could close it (`\3c ` means the same to CSS).
pub fn filter_for_html(css: &str) -> String {
    filter(css).replace('<', "\\3c ")
}

/// Where the walk is, for what a string means there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Within {
    Other,
    /// `url(` or `src(`: the string is a URL.
    Url(Use),
    /// `image-set(` and its kin: each string is a picture's URL.
    Pictures,
}

fn walk(p: &mut Parser<'_, '_>, out: &mut String, within: Within, depth: usize) {
    // After `@import`, the next URL is a style sheet, which loads.
    let mut import = false;
    loop {
        let start = p.state();
        let token = match p.next_including_whitespace_and_comments() {
            Ok(t) => t.clone(),
            Err(_) => return,
        };
        // Every token but a URL that goes out as it came in, byte for
        // byte: the filter changes nothing else.
        let source = p.slice_from(start.position());
        let how = match within {
            Within::Url(how) => how,
            _ if import => Use::Load,
            _ => Use::Picture,
        };
        match &token {
            Token::UnquotedUrl(url) => {
                import = false;
                match judge(url, how, false) {
                    Verdict::Keep => out.push_str(source),
                    Verdict::Replace(to) => {
                        let _ = Token::UnquotedUrl(to.as_str().into()).to_css(out);
                    }
                    Verdict::Drop => out.push_str(NO_URL),
                }
            }
            Token::QuotedString(s) if within != Within::Other || import => {
                import = false;
                match judge(s, how, false) {
                    Verdict::Keep => out.push_str(source),
                    Verdict::Replace(to) => write_string(out, &to),
                    Verdict::Drop => out.push_str(NOTHING),
                }
            }
            Token::AtKeyword(name) => {
                import = name.eq_ignore_ascii_case("import");
                out.push_str(source);
            }
            Token::Function(name) => {
                let name = name.to_ascii_lowercase();
                let inner = match name.as_str() {
                    "url" | "src" => Within::Url(how),
                    "image-set" | "-webkit-image-set" | "image" | "cross-fade"
                    | "-webkit-cross-fade" => Within::Pictures,
                    _ => Within::Other,
                };
                out.push_str(source);
                nested(p, out, inner, depth, ')');
                import = false;
            }
            Token::ParenthesisBlock => {
                out.push_str(source);
                nested(p, out, Within::Other, depth, ')');
            }
            Token::SquareBracketBlock => {
                out.push_str(source);
                nested(p, out, Within::Other, depth, ']');
            }
            Token::CurlyBracketBlock => {
                out.push_str(source);
                nested(p, out, Within::Other, depth, '}');
                import = false;
            }
            Token::Semicolon => {
                import = false;
                out.push_str(source);
            }
            _ => out.push_str(source),
        }
    }
}

/// Walk the block just opened, then write its end as the source has it
/// (nothing, if the sheet ends first).
fn nested(p: &mut Parser<'_, '_>, out: &mut String, within: Within, depth: usize, end: char) {
    let mut inner_end = None;
    // Whatever the inner walk leaves unread is skipped by the parser.
    let _ = p.parse_nested_block(|inner| -> Result<(), cssparser::ParseError<'_, ()>> {
        if depth < DEPTH {
            walk(inner, out, within, depth + 1);
            inner_end = Some(inner.state());
        }
        Ok(())
    });
    match inner_end {
        Some(at) => out.push_str(p.slice_from(at.position())),
        None => out.push(end),
    }
}

fn write_string(out: &mut String, s: &str) {
    let _ = cssparser::serialize_string(s, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "example.org";

    #[test]
    fn urls_out_of_umbra_go_in_every_spelling() {
        let sheets = [
            "a{background:url(http://example.org/a.png)}",
            "a{background:url( 'http://example.org/a.png' )}",
            "a{background:URL(\"//example.org/a.png\")}",
            "a{background:u\\72l(http://example.org/a.png)}",
            "@import 'http://example.org/s.css';",
            "@import url(//example.org/s.css) screen;",
            "@IMPORT \"https://example.org/s.css\";",
            "a{background-image:image-set('http://example.org/a.png' 1x)}",
            "a{background-image:-webkit-image-set(url(http://example.org/a.png) 2x)}",
            "@font-face{font-family:x;src:url(http://example.org/f.woff)}",
            "a{b:c}@media screen{a{cursor:url(http://example.org/c.cur),auto}}",
            "a{mask:src('http://example.org/m.svg')}",
        ];
        for sheet in sheets {
            let out = filter(sheet);
            assert!(!out.contains(OUT), "{sheet} → {out}");
        }
    }

    #[test]
    fn urls_inside_umbra_stay_and_the_rest_is_untouched() {
        let sheet = "body { color: #123456; background: url(../img/a.png) } \
                     h1::before { content: \"http://example.org\" }";
        let out = filter(sheet);
        assert!(out.contains("url(../img/a.png)"), "{out}");
        // A string that is not a URL is only text.
        assert!(out.contains("\"http://example.org\""), "{out}");
        assert!(out.contains("#123456"), "{out}");
        assert_eq!(
            filter("a{background:url(umbra:chk:K/a.png)}"),
            "a{background:url(/umbra:chk:K/a.png)}"
        );
        assert_eq!(filter("@import 'b.css';"), "@import 'b.css';");
        // A sheet with nothing to take out comes out byte for byte.
        let untouched =
            "/* c */ a > b{margin:1.50em 0 ;color:RGB(1 2 3)}\n@media (min-width:0){x{y:\"\\41\"}}\
                         p{background:url(a.png)} q{bad:url(a b)} r{s:'broken\n}";
        assert_eq!(filter(untouched), untouched);
        assert_eq!(
            filter("a{background:url(data:image/png;base64,AA)}"),
            "a{background:url(data:image/png;base64,AA)}"
        );
        assert!(!filter("@import url(data:text/css,a{});").contains("text/css"));
    }

    #[test]
    fn a_sheet_cannot_close_its_style_element() {
        let out = filter_for_html("a::after{content:\"\\3c /style><script>x()</script>\"}");
        assert!(!out.contains('<'), "{out}");
    }

    #[test]
    fn deep_nesting_takes_neither_stack_nor_the_rest_of_the_sheet_out() {
        let deep = "(".repeat(200_000) + &")".repeat(200_000) + "a{b:url(http://example.org)}";
        let out = filter(&deep);
        assert!(!out.contains(OUT));
        assert!(
            out.ends_with("a{b:url(data:,)}"),
            "{}",
            &out[out.len() - 40..]
        );
        let unclosed = "a{background:url(http://example.org/a.png)";
        assert!(!filter(unclosed).contains(OUT));
    }

    #[test]
    fn a_sheet_filtered_twice_is_the_sheet_filtered_once_even_at_the_depth_cap() {
        // A URL written without quotes is rewritten without quotes:
        // `url("...")` is a block, one level deeper, which at the cap
        // would be left out the second time.
        for url in ["umbra:chk:K", "http://example.org/a.png", "a b\\(\"'"] {
            for depth in [0, DEPTH - 2, DEPTH - 1, DEPTH] {
                let sheet = "[".repeat(depth) + "a{b:url(" + url + ")}";
                let once = filter(&sheet);
                assert_eq!(filter(&once), once, "{url} at {depth}");
            }
        }
    }
}

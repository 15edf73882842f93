//! HTML for the pages: escaping, the one layout every page shares, and the
//! headers every HTML response carries.
//!
//! Pages are built with `format!` around a few fixed templates, not with a
//! template engine: there are three pages of a dozen lines each, and with
//! every interpolated value passing through [`escape`] the whole output is
//! easy to audit. The only markup that is not escaped is this module's and
//! `reset.rs`'s own string literals.
//!
//! The style is one `<style>` element with a fixed text; the
//! `Content-Security-Policy` allows exactly that text by its SHA-256 and
//! nothing else (no scripts, images, fonts, frames or other origins), so an
//! injection that slipped past the escaping could still run nothing.

use crate::http::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Escapes `text` for an HTML text node or a double- or single-quoted
/// attribute value: `&`, `<`, `>`, `"` and `'` become character references,
/// everything else is kept as is.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The pages' whole style. Readable on a phone: the column is as wide as
/// the screen up to a comfortable measure, and inputs and text are at least
/// 16 px, below which phones zoom into a focused input.
const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;padding:1.5rem 1rem;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
color:#1d1d1f;background:#f5f5f7}\
main{max-width:26rem;margin:0 auto;padding:1.5rem;background:#fff;border-radius:.75rem;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}\
.app{margin:0 0 .25rem;color:#555;font-size:.9rem}\
h1{margin:0 0 1rem;font-size:1.4rem;line-height:1.25}\
label{display:block;margin:1rem 0 .25rem;font-weight:600}\
input{display:block;width:100%;padding:.6rem .7rem;font:inherit;border:1px solid #888;border-radius:.4rem}\
input:focus{outline:2px solid #0a58ca;outline-offset:1px}\
.hint{margin:.35rem 0 0;color:#555;font-size:.9rem}\
.error{margin:0 0 1rem;padding:.6rem .8rem;color:#842029;background:#f8d7da;border-radius:.4rem}\
.done{margin:0 0 1rem;padding:.6rem .8rem;color:#0f5132;background:#d1e7dd;border-radius:.4rem}\
button{display:block;width:100%;margin-top:1.5rem;padding:.7rem;font:inherit;font-weight:600;\
color:#fff;background:#0a58ca;border:0;border-radius:.4rem;cursor:pointer}\
button:focus{outline:2px solid #1d1d1f;outline-offset:2px}";

/// The `Content-Security-Policy` of every page: nothing may load or run,
/// except [`STYLE`], named by its hash; forms may post only to this origin;
/// no page may frame these, and no `<base>` may redirect relative URLs.
static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest);
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
});

/// A page to answer with: the parts that differ between pages.
pub struct Page<'a> {
    /// The status code.
    pub status: u16,
    /// The product's name (`APP_NAME`), shown above the heading and in the
    /// title. Plain text.
    pub app_name: &'a str,
    /// The heading, also the first part of the title. Plain text.
    pub heading: &'a str,
    /// The markup under the heading: built by the caller from literals and
    /// [`escape`]d values.
    pub content: String,
}

impl Page<'_> {
    /// The complete response: the layout around the content, with the
    /// headers every HTML response carries (see [`html_headers`]).
    pub fn into_response(self) -> Response {
        let app = escape(self.app_name);
        let heading = escape(self.heading);
        let body = format!(
            "<!doctype html>\n\
             <html lang=\"en\">\n\
             <head>\n\
             <meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"referrer\" content=\"no-referrer\">\n\
             <meta name=\"robots\" content=\"noindex, nofollow\">\n\
             <title>{heading} · {app}</title>\n\
             <style>{STYLE}</style>\n\
             </head>\n\
             <body>\n\
             <main>\n\
             <p class=\"app\">{app}</p>\n\
             <h1>{heading}</h1>\n\
             {content}\
             </main>\n\
             </body>\n\
             </html>\n",
            content = self.content,
        );
        let mut response = Response::empty(self.status);
        html_headers(&mut response);
        response.body = body.into_bytes();
        response
    }
}

/// Sets the headers of an HTML response: its type, and the defences a page
/// holding a secret link needs. `Referrer-Policy: no-referrer` because the
/// reset token is in the page's URL; `Cache-Control: no-store` so no cache
/// (shared or the browser's) keeps a page with a live token; `nosniff` so
/// the type is never second-guessed; `X-Frame-Options` for browsers older
/// than CSP's `frame-ancestors`.
pub fn html_headers(response: &mut Response) {
    response.set_header("Content-Type", "text/html; charset=utf-8");
    response.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY.as_str());
    response.set_header("Referrer-Policy", "no-referrer");
    response.set_header("Cache-Control", "no-store");
    response.set_header("X-Content-Type-Options", "nosniff");
    response.set_header("X-Frame-Options", "DENY");
}

/// A paragraph of plain `text`.
pub fn paragraph(text: &str) -> String {
    format!("<p>{}</p>\n", escape(text))
}

/// Why a form came back, in plain `text`; `role="alert"` so a screen reader
/// announces it.
pub fn error(text: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(text))
}

/// That something worked, in plain `text`.
pub fn success(text: &str) -> String {
    format!("<p class=\"done\" role=\"status\">{}</p>\n", escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters_and_nothing_else() {
        assert_eq!(escape("&"), "&amp;");
        assert_eq!(escape("<"), "&lt;");
        assert_eq!(escape(">"), "&gt;");
        assert_eq!(escape("\""), "&quot;");
        assert_eq!(escape("'"), "&#39;");
        assert_eq!(
            escape("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        // Already-escaped text is escaped again, not passed through.
        assert_eq!(escape("&amp;"), "&amp;amp;");
        let plain = "Ada Lovelace, café 🎉 a-b_c.d/e?f=g#h";
        assert_eq!(escape(plain), plain);
        assert_eq!(escape(""), "");
    }

    #[test]
    fn pages_carry_every_header_and_escape_their_text() {
        let page = Page {
            status: 422,
            app_name: "<b>Acme</b>",
            heading: "Tom & Jerry's",
            content: error("a \"quoted\" <reason>"),
        };
        let r = page.into_response();
        assert_eq!(r.status, 422);
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
        let csp = r.header("Content-Security-Policy").unwrap();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.ends_with("'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"));
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("<title>Tom &amp; Jerry&#39;s · &lt;b&gt;Acme&lt;/b&gt;</title>"));
        assert!(body.contains("a &quot;quoted&quot; &lt;reason&gt;"));
        assert!(!body.contains("<b>"));
        assert!(body.contains("<meta name=\"viewport\""));
    }

    #[test]
    fn the_policy_names_the_hash_of_the_style_element() {
        let r = Page {
            status: 200,
            app_name: "a",
            heading: "h",
            content: String::new(),
        }
        .into_response();
        let body = String::from_utf8(r.body.clone()).unwrap();
        let start = body.find("<style>").unwrap() + "<style>".len();
        let end = body.find("</style>").unwrap();
        let digest = Sha256::digest(&body.as_bytes()[start..end]);
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        let csp = r.header("Content-Security-Policy").unwrap();
        assert!(
            csp.contains(&format!("style-src 'sha256-{hash}';")),
            "{csp}"
        );
        // One style element, no style attributes (a hash does not cover them).
        assert_eq!(body.matches("<style>").count(), 1);
        assert!(!body.contains("style=\""));
    }
}

//! The QR code of an `otpauth://` URI, drawn as a small standalone SVG, so a
//! user can enrol an authenticator app by pointing a camera at the screen.
//!
//! This module owns only the drawing. The encoding itself is Nayuki's
//! `qrcodegen` (no dependencies, no unsafe code), at error correction level
//! Medium (about 15% of the symbol can be damaged), the usual choice for codes
//! shown on a screen.
//!
//! The SVG is built to be safe to serve or embed as it is:
//!
//! - It contains only a white background `rect` and one black `path` of 1x1
//!   squares, one per dark module: no script, no style sheet, no link, no
//!   external reference, nothing from the input. The encoded text (which holds
//!   the TOTP secret) never appears in it as text, so it needs no escaping and
//!   is not found by searching the page for the secret, though anyone who scans
//!   the picture reads it: serve it like the secret itself.
//! - A quiet zone of 4 modules on every side, which the QR specification
//!   requires and scanners rely on to find the code.
//! - `shape-rendering="crispEdges"`, so adjacent squares do not show hairline
//!   seams when the picture is scaled.

use std::fmt::Write as _;

use qrcodegen::{QrCode, QrCodeEcc};

/// Width of the light border around the code, in modules.
const QUIET_ZONE: i32 = 4;

/// `text` as a QR code (error correction Medium) in a standalone SVG document:
/// `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 N N" ...>` where `N` is
/// the QR code's size in modules plus 8 (a 4-module quiet zone each side), a
/// white background and one black path of 1x1 squares. The picture has no
/// `width` or `height`, so it scales to whatever box the page gives it.
///
/// `None` if `text` does not fit in the largest QR code (about 2300 bytes of
/// arbitrary UTF-8 at this error correction level); never panics.
pub fn svg(text: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let size = qr.size();
    let view = size + 2 * QUIET_ZONE;

    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                // Writing to a String cannot fail; the Result is the trait's.
                let _ = write!(path, "M{},{}h1v1h-1z", x + QUIET_ZONE, y + QUIET_ZONE);
            }
        }
    }

    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {view} {view}\" \
         shape-rendering=\"crispEdges\">\
         <rect width=\"{view}\" height=\"{view}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/>\
         </svg>\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/My%20App:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=My%20App&algorithm=SHA1&digits=6&period=30";

    #[test]
    fn svg_of_an_otpauth_uri() {
        let svg = svg(URI).unwrap();
        let size = QrCode::encode_text(URI, QrCodeEcc::Medium).unwrap().size();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let view = size + 8;
        assert!(
            svg.contains(&format!("viewBox=\"0 0 {view} {view}\"")),
            "{svg}"
        );
        assert!(svg.contains("<path d=\"M"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.to_lowercase().contains("<script"));
        assert!(!svg.contains("href"));
        assert!(
            !svg.contains("GEZDGNBVGY3TQOJQ"),
            "the text is not in the SVG"
        );
    }

    #[test]
    fn one_square_per_dark_module_inside_the_quiet_zone() {
        let qr = QrCode::encode_text(URI, QrCodeEcc::Medium).unwrap();
        let svg = svg(URI).unwrap();
        let dark = (0..qr.size())
            .flat_map(|y| (0..qr.size()).map(move |x| (x, y)))
            .filter(|&(x, y)| qr.get_module(x, y))
            .count();
        assert_eq!(svg.matches("h1v1h-1z").count(), dark);
        // The top-left finder pattern's corner module is dark and sits at (4, 4).
        assert!(svg.contains("\"M4,4h1v1h-1z"));
        assert!(!svg.contains("M3,") && !svg.contains(",3h"));
    }

    #[test]
    fn markup_characters_in_the_text_do_not_reach_the_svg() {
        let svg = svg("<script>alert(1)</script>\"&'").unwrap();
        assert!(!svg.contains("script"));
        assert!(!svg.contains("alert"));
    }

    #[test]
    fn long_texts_do_not_panic() {
        let long = "a".repeat(2000);
        if let Some(svg) = svg(&long) {
            assert!(svg.starts_with("<svg"));
        }
        assert_eq!(svg(&"a".repeat(10_000)), None);
        assert_eq!(svg(&"é".repeat(5_000)), None);
        assert!(svg("").is_some());
    }
}

//! Images given as `data:` URLs.
//!
//! The canonical format carries an image as a URL (OpenAI's `image_url`),
//! either `https://…` or an inline `data:` URL. Providers whose format has a
//! separate "inline bytes" shape (Anthropic's `base64` image source, Gemini's
//! `inline_data`) need the media type and the data split out.

/// An inline `data:` URL, split (RFC 2397).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUrl<'a> {
    /// `image/png`; `text/plain;charset=US-ASCII` when the URL names none
    /// (the RFC's default), without parameters other than the type itself.
    pub media_type: &'a str,
    /// Whether the data is base64 (`;base64`); otherwise it is percent-encoded
    /// text, left as is.
    pub base64: bool,
    /// Everything after the first comma.
    pub data: &'a str,
}

/// Splits a `data:` URL; `None` when `url` is not one (an `https://` URL, or
/// a `data:` URL without its comma).
pub fn parse_data_url(url: &str) -> Option<DataUrl<'_>> {
    let rest = url.get(..5).filter(|scheme| scheme.eq_ignore_ascii_case("data:")).map(|_| &url[5..])?;
    let (header, data) = rest.split_once(',')?;
    let mut params = header.split(';');
    let media_type = params.next().map(str::trim).filter(|t| !t.is_empty()).unwrap_or("text/plain;charset=US-ASCII");
    let base64 = params.any(|p| p.trim().eq_ignore_ascii_case("base64"));
    Some(DataUrl { media_type, base64, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBORw0KGgo="),
            Some(DataUrl { media_type: "image/png", base64: true, data: "iVBORw0KGgo=" })
        );
        assert_eq!(
            parse_data_url("DATA:image/jpeg;name=a.jpg;base64,AAA"),
            Some(DataUrl { media_type: "image/jpeg", base64: true, data: "AAA" })
        );
        assert_eq!(
            parse_data_url("data:,hello%20world"),
            Some(DataUrl { media_type: "text/plain;charset=US-ASCII", base64: false, data: "hello%20world" })
        );
        assert_eq!(parse_data_url("https://example.com/cat.png"), None);
        assert_eq!(parse_data_url("data:image/png;base64"), None);
        assert_eq!(parse_data_url("dat"), None);
    }
}
